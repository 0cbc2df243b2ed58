/// The auxiliary word loss (training only): from the image vector alone, predict which words the
/// image's captions use, as independent yes/no questions (multi-label, in the spirit of the word
/// detectors of Fang et al., "From captions to visual concepts and back", 2015):
///
///     wordLogits = head(v)                                  // [B, V], head: Linear(Dv → V)
///     present[b, w] = 1 if word w occurs in a target caption of image b (ids < 4 left out)
///     loss_words = mean binary cross-entropy(wordLogits, present) over B × (V − 4)
///
/// The caption loss reaches the encoder only through the decoder, and early in training that
/// signal barely says what the objects are (on the shapes data, shape words stay at chance for
/// thousands of steps while colours are learnt at once). This loss tells the encoder directly which
/// content words to make recognisable. Its `weight` scales its gradient into `v`; the head is not
/// part of the model file (SPEC §3), only of the training state.
public final class WordLoss {
  public let head: Linear  // weight [V, Dv], bias [V]
  public let weight: Float
  let crossEntropy = SigmoidBinaryCrossEntropy()
  private var present: Tensor?  // [B, V]

  public init(imageSize dv: Int, vocabularySize: Int, weight: Float) {
    head = Linear(inFeatures: dv, outFeatures: vocabularySize)
    self.weight = weight
  }

  /// Under the names the training state keeps them by.
  public var namedParameters: [(String, Parameter)] {
    [("word_head.weight", head.weight), ("word_head.bias", head.bias)]
  }

  public func initialize(using generator: inout SeededGenerator) {
    head.initialize(using: &generator)
  }

  /// The mean word loss of image vectors `v` [B, Dv] given the decoder's targets `[T, B·K]`
  /// (time-major; row r belongs to image r / K).
  public func forward(v: Tensor, targetTokens: [Int], steps: Int, captionsPerImage k: Int) -> Float {
    let (batch, vocabulary) = (v.shape[0], head.outFeatures)
    let rows = batch * k
    precondition(targetTokens.count == steps * rows)
    let present = reuseWorkspace(&self.present, shape: [batch, vocabulary])
    present.fill(0)
    for t in 0..<steps {
      for r in 0..<rows {
        let token = targetTokens[t * rows + r]
        if token >= Vocabulary.firstWord && token < vocabulary {
          present.pointer[(r / k) * vocabulary + token] = 1
        }
      }
    }
    let logits = head.forward(v)
    return crossEntropy.forward(logits: logits, targets: present, firstColumn: Vocabulary.firstWord)
  }

  /// The gradient of weight · loss_words: accumulates the head's, returns dv [B, Dv].
  public func backward() -> Tensor {
    let logitsGrad = crossEntropy.backward()
    for i in 0..<logitsGrad.count { logitsGrad.pointer[i] *= weight }
    return head.backward(logitsGrad)!
  }
}
