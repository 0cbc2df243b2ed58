/// What the training objective's auxiliary terms share (the word and scene losses on the image
/// vector, the mention loss on the decoder's states): a linear head reads a vector `v` per row and
/// answers independent yes/no questions, scored by weighted binary cross-entropy
/// (SigmoidBinaryCrossEntropy):
///
///     logits = head(v)                                   // [B, L], head: Linear(D → L)
///     loss   = (1/B) Σ_b Σ_j w_j · bce(logits[b, j], present[b, j])
///
/// The caller marks `present` [B, L] (1: yes), and may leave rows out (B is then the number of rows
/// kept). `weight` scales the gradient sent back into `v`.
/// The head is not part of the model file (SPEC §3), only of the training state, under `name`.
public final class AuxiliaryHead {
  public let head: Linear  // weight [L, Dv], bias [L]
  public let weight: Float
  /// The state's prefix for the head's tensors (`word_head`, `scene_head`, `mention_head`).
  public let name: String
  let columnWeights: [Float]  // [L]
  let crossEntropy = SigmoidBinaryCrossEntropy()
  private var present: Tensor?  // [B, L]

  public init(name: String, inputSize: Int, columnWeights: [Float], weight: Float) {
    head = Linear(inFeatures: inputSize, outFeatures: columnWeights.count)
    self.name = name
    self.columnWeights = columnWeights
    self.weight = weight
  }

  /// Under the names the training state keeps them by.
  public var namedParameters: [(String, Parameter)] {
    [("\(name).weight", head.weight), ("\(name).bias", head.bias)]
  }

  public func initialize(using generator: inout SeededGenerator) {
    head.initialize(using: &generator)
  }

  /// The loss of vectors `v` [B, D] over the rows `rowMask` [B] keeps (nil: all); `mark(present)`
  /// sets the answers ([B, L], zeroed).
  public func forward(v: Tensor, rowMask: [Bool]? = nil, mark: (Tensor) -> Void) -> Float {
    let present = reuseWorkspace(&self.present, shape: [v.shape[0], head.outFeatures])
    present.fill(0)
    mark(present)
    return crossEntropy.forward(
      logits: head.forward(v), targets: present, columnWeights: columnWeights, rowMask: rowMask)
  }

  /// The gradient of weight · loss: accumulates the head's, returns dv [B, D].
  public func backward() -> Tensor {
    let logitsGrad = crossEntropy.backward()
    Elementwise.scale(logitsGrad.pointer, by: weight, count: logitsGrad.count)
    return head.backward(logitsGrad)!
  }
}
