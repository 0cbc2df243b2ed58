/// A deep bidirectional recurrent network (for the image–sentence retrieval model; the caption decoder
/// generates left to right and cannot use it).
///
/// Each layer l is a forward-in-time and a backward-in-time `RecurrentLayer` over the same input; their
/// outputs are concatenated per step, [T, B, 2H] (forward half first), and layer l > 0 reads layer
/// l−1's concatenation (In_l = 2H). Both directions add their own image term W_iv v (`every`: at every
/// step; `first`: at the first step each direction processes, i.e. t = 0 forwards and t = length−1
/// backwards).
///
/// Parameter names: `"{l}.forward.weight_ih"`, `"{l}.backward.weight_ih"`, … (each direction holds
/// SPEC §3's per-layer tensors).
///
/// With `lengths`, the backward direction of row b starts at its last real token lengths[b]−1, and the
/// output at padding positions (t ≥ lengths[b]) is zero in both directions; without, every position
/// of the padded batch is a real step.
public final class BidirectionalStack {
  public let cell: CellType
  public let inputSize: Int
  public let hiddenSize: Int
  public let imageSize: Int
  public let imageInput: ImageInput
  /// Per layer, bottom first: the forward-in-time and backward-in-time layers.
  public let layers: [(forward: RecurrentLayer, backward: RecurrentLayer)]

  private var outputs: [Tensor] = []  // per layer [T, B, 2H]
  private var dForward = Tensor(zeros: [0])  // [T, B, H]
  private var dBackward = Tensor(zeros: [0])  // [T, B, H]
  private var dInputs: [Tensor] = []  // per layer [T, B, In_l]
  private var dImage = Tensor(zeros: [0])  // [B, Dv]

  public init(
    cell: CellType, inputSize: Int, hiddenSize: Int, imageSize dv: Int, layers: Int,
    imageInput: ImageInput
  ) {
    precondition(layers >= 1, "BidirectionalStack: at least one layer")
    self.cell = cell
    self.inputSize = inputSize
    self.hiddenSize = hiddenSize
    self.imageSize = dv
    self.imageInput = imageInput
    self.layers = (0..<layers).map { l in
      let input = l == 0 ? inputSize : 2 * hiddenSize
      return (
        RecurrentLayer(
          cell: cell, inputSize: input, hiddenSize: hiddenSize, imageSize: dv, imageInput: imageInput),
        RecurrentLayer(
          cell: cell, inputSize: input, hiddenSize: hiddenSize, imageSize: dv, imageInput: imageInput,
          reverse: true)
      )
    }
  }

  /// `"0.forward.weight_ih"`, …, `"0.backward.weight_ih"`, …, `"1.forward.weight_ih"`, …
  public var namedParameters: [(String, Parameter)] {
    layers.enumerated().flatMap { l, pair in
      pair.forward.namedParameters.map { ("\(l).forward.\($0.0)", $0.1) }
        + pair.backward.namedParameters.map { ("\(l).backward.\($0.0)", $0.1) }
    }
  }

  /// As `RecurrentStack.initialize`, forward direction then backward direction, layer by layer.
  public func initialize(using generator: inout some RandomNumberGenerator) {
    for pair in layers {
      pair.forward.initialize(using: &generator)
      pair.backward.initialize(using: &generator)
    }
  }

  /// The top layer's [h→_t ; h←_t] for every t, [T, B, 2H], from `inputs` [T, B, In] and `image`
  /// [B, Dv]; `lengths` (one per row, each in 0...T) as described above. The result is a workspace.
  public func forward(inputs: Tensor, image: Tensor, lengths: [Int]? = nil) -> Tensor {
    let T = inputs.shape[0]
    let B = inputs.shape[1]
    let H = hiddenSize
    if outputs.first?.shape != [T, B, 2 * H] {
      outputs = layers.map { _ in Tensor(zeros: [T, B, 2 * H]) }
      dForward = Tensor(zeros: [T, B, H])
      dBackward = Tensor(zeros: [T, B, H])
      dInputs = layers.indices.map { Tensor(zeros: [T, B, $0 == 0 ? inputSize : 2 * H]) }
      dImage = Tensor(zeros: [B, imageSize])
    }
    var x = inputs
    for (l, pair) in layers.enumerated() {
      let input = x
      let (hForwardTensor, hBackwardTensor) = bothDirections(
        { pair.forward.forward(input: input, image: image, lengths: lengths) },
        { pair.backward.forward(input: input, image: image, lengths: lengths) })
      let hForward = hForwardTensor.pointer
      let hBackward = hBackwardTensor.pointer
      // concatenate per row: [T·B, H] ‖ [T·B, H] → [T·B, 2H]
      let out = outputs[l].pointer
      for row in 0..<(T * B) {
        (out + row * 2 * H).update(from: hForward + row * H, count: H)
        (out + row * 2 * H + H).update(from: hBackward + row * H, count: H)
      }
      x = outputs[l]
    }
    return x
  }

  /// BPTT in both directions from `outputGrad` [T, B, 2H]. Accumulates the parameter gradients; returns
  /// the gradients on the inputs [T, B, In] and the image vectors [B, Dv] (workspaces).
  public func backward(outputGrad: Tensor) -> (inputGrad: Tensor, imageGrad: Tensor) {
    let T = outputGrad.shape[0]
    let B = outputGrad.shape[1]
    let H = hiddenSize
    precondition(
      outputGrad.shape == outputs.first?.shape, "BidirectionalStack: output grad \(outputGrad.shape)")
    dImage.fill(0)
    var grad = outputGrad
    for l in layers.indices.reversed() {
      // split [T·B, 2H] into the two directions' [T·B, H]
      let d = grad.pointer
      for row in 0..<(T * B) {
        (dForward.pointer + row * H).update(from: d + row * 2 * H, count: H)
        (dBackward.pointer + row * H).update(from: d + row * 2 * H + H, count: H)
      }
      let (pair, gradForward, gradBackward) = (layers[l], dForward, dBackward)
      let ((dxF, dvF), (dxB, dvB)) = bothDirections(
        { pair.forward.backward(outputGrad: gradForward) },
        { pair.backward.backward(outputGrad: gradBackward) })
      // both directions read the same input and image: their gradients add
      let dx = dInputs[l].pointer
      for k in 0..<dInputs[l].count { dx[k] = dxF[k] + dxB[k] }
      let dv = dImage.pointer
      for k in 0..<dImage.count { dv[k] += dvF[k] + dvB[k] }
      grad = dInputs[l]
    }
    return (grad, dImage)
  }

  /// Runs the two directions' passes (`first` and `second`, which share no memory but their
  /// read-only inputs) at once, one per compute thread, when our kernels do the products: each
  /// direction's per-step products are too small to split well over two threads, and the two
  /// directions never wait for each other. Their products then run on one thread each (a
  /// fork-join call inside a job stays on its thread). With OpenBLAS doing the products (no
  /// AVX-512), whose own threads would contend, they run one after the other.
  private func bothDirections<A, B>(_ first: () -> A, _ second: () -> B) -> (A, B) {
    guard Gemm.usesKernels && Parallel.workers >= 2 else { return (first(), second()) }
    var a: A?
    var b: B?
    withUnsafeMutablePointer(to: &a) { aSlot in
      withUnsafeMutablePointer(to: &b) { bSlot in
        let slots = UncheckedSendable((aSlot, bSlot))
        Parallel.run(parts: 2) { part in
          if part == 0 { slots.value.0.pointee = first() } else { slots.value.1.pointee = second() }
        }
      }
    }
    return (a!, b!)
  }
}
