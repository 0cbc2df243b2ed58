/// A stack of `layers` recurrent layers (SPEC §3): layer 0 reads the inputs (In_0 = In), layer l > 0
/// reads layer l−1's h at the same step (In_l = H); every layer adds its own image term W_iv v; the
/// output is the top layer's h_t. h_0 = c_0 = 0 in every layer.
///
/// Training: `forward` over a padded batch [T, B, In] then `backward` (BPTT through all layers).
/// Inference: `makeState` then `step` once per token for R hypotheses; `RecurrentState.gathered`
/// reorders hypotheses (beam search).
public final class RecurrentStack {
  public let cell: CellType
  public let inputSize: Int
  public let hiddenSize: Int
  public let imageSize: Int
  public let imageInput: ImageInput
  /// The layers, bottom first.
  public let layers: [RecurrentLayer]

  private var dImage = Tensor(zeros: [0])  // [B, Dv] summed over layers
  private var stepWorkspace: RecurrentLayer.StepWorkspace?

  public init(
    cell: CellType, inputSize: Int, hiddenSize: Int, imageSize dv: Int, layers: Int,
    imageInput: ImageInput
  ) {
    precondition(layers >= 1, "RecurrentStack: at least one layer")
    self.cell = cell
    self.inputSize = inputSize
    self.hiddenSize = hiddenSize
    self.imageSize = dv
    self.imageInput = imageInput
    self.layers = (0..<layers).map { l in
      RecurrentLayer(
        cell: cell, inputSize: l == 0 ? inputSize : hiddenSize, hiddenSize: hiddenSize, imageSize: dv,
        imageInput: imageInput)
    }
  }

  /// `"0.weight_ih"`, `"0.weight_hh"`, `"0.weight_iv"`, `"0.bias_ih"`, `"0.bias_hh"`
  /// (`"0.weight_peep"`), `"1.weight_ih"`, …: SPEC §3's names after `decoder.rnn.`.
  public var namedParameters: [(String, Parameter)] {
    layers.enumerated().flatMap { l, layer in layer.namedParameters.map { ("\(l).\($0.0)", $0.1) } }
  }

  /// See `RecurrentLayer.initialize`: U(−1/√H, 1/√H) everywhere (weight_peep included), forget-gate
  /// rows of bias_ih 1 and of bias_hh 0 for the LSTM variants.
  public func initialize(using generator: inout some RandomNumberGenerator) {
    for layer in layers { layer.initialize(using: &generator) }
  }

  /// The top layer's h_t for every t, [T, B, H], from `inputs` [T, B, In] and `image` [B, Dv].
  /// The result is a workspace, valid until the next `forward`; `inputs` and `image` must stay
  /// unchanged until `backward`.
  public func forward(inputs: Tensor, image: Tensor) -> Tensor {
    var x = inputs
    for layer in layers { x = layer.forward(input: x, image: image) }
    return x
  }

  /// BPTT from `outputGrad` [T, B, H] (gradient on the top layer's h_t). Accumulates every parameter's
  /// gradient; returns the gradients on the inputs [T, B, In] and the image vectors [B, Dv]
  /// (workspaces, valid until the next call).
  public func backward(outputGrad: Tensor) -> (inputGrad: Tensor, imageGrad: Tensor) {
    var grad = outputGrad
    var first = true
    for layer in layers.reversed() {
      let (inputGrad, imageGrad) = layer.backward(outputGrad: grad)
      if first {
        if dImage.shape != imageGrad.shape { dImage = Tensor(zeros: imageGrad.shape) }
        dImage.copy(from: imageGrad)
        first = false
      } else {
        let d = dImage.pointer
        let e = imageGrad.pointer
        for k in 0..<dImage.count { d[k] += e[k] }
      }
      grad = inputGrad
    }
    return (grad, dImage)
  }

  // MARK: Inference, one step at a time

  /// The decoder state of R hypotheses: h = c = 0, t = 0, and each layer's image projection
  /// W_iv v [R, G·H] computed once.
  public func makeState(image: Tensor) -> RecurrentState {
    precondition(
      image.shape.count == 2 && image.shape[1] == imageSize, "RecurrentStack: image \(image.shape)")
    let R = image.shape[0]
    let H = hiddenSize
    let hasC = layers[0].hasCellState
    var state = RecurrentState(h: [], c: [], imageProjection: [], t: 0)
    for layer in layers {
      state.h.append(Tensor(zeros: [R, H]))
      state.c.append(hasC ? Tensor(zeros: [R, H]) : nil)
      let projection = Tensor(zeros: [R, layer.gateWidth])
      layer.projectImage(image, into: projection)
      state.imageProjection.append(projection)
    }
    return state
  }

  /// Feeds `input` [R, In] (e.g. the embedded tokens) to every row, advances `state` (in place: the
  /// state's tensors are overwritten) and returns the top layer's new h [R, H] (the state's tensor).
  /// The image term is added at every step (`every`) or only at t = 0 (`first`), as in `forward`.
  @discardableResult
  public func step(input: Tensor, state: inout RecurrentState) -> Tensor {
    precondition(input.shape == [state.rows, inputSize], "RecurrentStack.step: input \(input.shape)")
    return step(input: input.pointer, firstLayerTerms: nil, state: &state)
  }

  /// `step(input:state:)` given, instead of the input, the first layer's input terms [R, G·H]
  /// (`RecurrentLayer.inputTerms` of the input: its biases plus x W_ihᵀ), e.g. kept per token.
  @discardableResult
  public func step(firstLayerTerms terms: Tensor, state: inout RecurrentState) -> Tensor {
    precondition(
      terms.shape == [state.rows, layers[0].gateWidth], "RecurrentStack.step: input terms \(terms.shape)")
    return step(input: terms.pointer, firstLayerTerms: terms.pointer, state: &state)
  }

  private func step(
    input: UnsafePointer<Float>, firstLayerTerms: UnsafePointer<Float>?, state: inout RecurrentState
  ) -> Tensor {
    let R = state.rows
    if stepWorkspace?.rows != R {
      stepWorkspace = RecurrentLayer.StepWorkspace(
        rows: R, gateWidth: cell.gates * hiddenSize, hidden: hiddenSize)
    }
    let workspace = stepWorkspace!
    let addImage = imageInput == .every || state.t == 0
    var x = input
    for (l, layer) in layers.enumerated() {
      layer.step(
        input: x, inputTerms: l == 0 ? firstLayerTerms : nil,
        imageProjection: addImage ? state.imageProjection[l].pointer : nil, h: state.h[l], c: state.c[l],
        fromZeroState: state.t == 0, workspace: workspace)
      x = UnsafePointer(state.h[l].pointer)
    }
    state.t += 1
    return state.h[layers.count - 1]
  }
}

/// The recurrent decoder state of R hypotheses (rows), for step-by-step decoding.
///
/// Its tensors are references: a copy of the struct shares them, and `RecurrentStack.step` overwrites
/// them in place. `gathered(rows:)` makes an independent state.
public struct RecurrentState {
  /// Per layer, h [R, H].
  public var h: [Tensor]
  /// Per layer, c [R, H] for the LSTM variants (lstm, peephole, coupled); nil for rnn and gru.
  public var c: [Tensor?]
  /// Per layer, the image projection W_iv v [R, G·H], computed once by `makeState`.
  public var imageProjection: [Tensor]
  /// The number of steps taken (0 before `<start>`). At 0 every h and c is zero, as `makeState`
  /// leaves them: the first step does not read them.
  public var t: Int

  public init(h: [Tensor], c: [Tensor?], imageProjection: [Tensor], t: Int) {
    self.h = h
    self.c = c
    self.imageProjection = imageProjection
    self.t = t
  }

  /// The number of hypotheses.
  public var rows: Int { h.first?.shape[0] ?? 0 }

  /// A new state whose row r is row `rows[r]` of this one (rows may repeat or be dropped).
  public func gathered(rows indices: [Int]) -> RecurrentState {
    let R = rows
    precondition(indices.allSatisfy { $0 >= 0 && $0 < R }, "RecurrentState.gathered: row out of range")
    func gather(_ tensor: Tensor) -> Tensor {
      let width = tensor.shape[1]
      let result = Tensor(zeros: [indices.count, width])
      for (r, source) in indices.enumerated() {
        (result.pointer + r * width).update(from: tensor.pointer + source * width, count: width)
      }
      return result
    }
    return RecurrentState(
      h: h.map(gather), c: c.map { $0.map(gather) }, imageProjection: imageProjection.map(gather), t: t)
  }
}
