/// The captioning network of SPEC §3: the VGG-style encoder gives `v`, and a recurrent decoder that
/// sees `v` at every step (or the first) predicts the next word.
///
///     v      = encoder(image)                          // [B, Dv]
///     x_t    = embed(token_t)                          // [T, R, E]    R = B·K caption rows
///     h_t    = rnn(x_t, h_{t-1}, v)                    // [T, R, H]    top layer
///     logits = out(h_t)                                // [T·R, V]
///     loss   = mean cross-entropy over non-pad targets
///
/// With K captions per image (`captionsPerImage`), the encoder runs once per image and row r of the
/// decoder reads image r / K. Training may add auxiliary terms that read `v` or the top hidden states
/// (ObjectiveTerm); the model itself computes only the network and the caption cross-entropy.
public final class CaptionModel {
  public let config: ModelConfig
  public let encoder: Encoder
  public let embed: Embedding
  public let rnn: RecurrentStack
  public let out: Linear
  /// The image–sentence matching model of the joint space, when the configuration has one
  /// (`retrieval.*` tensors; trained by the objective's retrieval term).
  public let retrieval: RetrievalModel?
  let embedDropout: Dropout
  let hiddenDropout: Dropout
  let crossEntropy = SoftmaxCrossEntropy()

  // Workspaces, reused while shapes stay the same.
  private var imageRows = Tensor(zeros: [0])  // [R, Dv]: v replicated K times
  private var imageGrad = Tensor(zeros: [0])  // [B, Dv]
  private var captionsPerImage = 1
  var stepInput = Tensor(zeros: [0])  // [R, E] for `step`
  var stepTerms = Tensor(zeros: [0])  // [R, G·H] for `step` with fixed weights
  /// Set by `fixWeights`: the first recurrent layer's term of each token fed so far.
  var tokenInputTerms: TokenInputTerms?
  /// The logits of the last `forward` (`[T·R, V]`, time-major rows), for tests and inspection.
  public private(set) var lastLogits: Tensor?
  /// The image vectors `v` of the last `forward` (`[B, Dv]`; the encoder's workspace, valid until the
  /// next forward).
  public private(set) var lastImageVectors = Tensor(zeros: [0])
  /// The top hidden states of the last `forward` after dropout (`[T·R, H]`, time-major rows).
  public private(set) var lastTopStates = Tensor(zeros: [0])

  public init(config: ModelConfig) {
    self.config = config
    encoder = Encoder(config: config)
    embed = Embedding(vocabularySize: config.vocabSize, embeddingSize: config.embed)
    rnn = RecurrentStack(
      cell: config.cell, inputSize: config.embed, hiddenSize: config.hidden, imageSize: config.dv,
      layers: config.rnnLayers, imageInput: config.imageInput)
    out = Linear(inFeatures: config.hidden, outFeatures: config.vocabSize)
    retrieval = config.retrieval.map {
      RetrievalModel(config: $0, vocabularySize: config.vocabSize, imageSize: config.dv)
    }
    embedDropout = Dropout(probability: config.dropout)
    hiddenDropout = Dropout(probability: config.dropout)
  }

  /// Every parameter under its SPEC §3 name, in a fixed order.
  public var namedParameters: [(String, Parameter)] {
    encoder.namedParameters.map { ("encoder." + $0.0, $0.1) }
      + [("decoder.embed.weight", embed.weight)]
      + rnn.namedParameters.map { ("decoder.rnn." + $0.0, $0.1) }
      + [("decoder.out.weight", out.weight), ("decoder.out.bias", out.bias)]
      + (retrieval?.namedParameters ?? [])
  }

  public var parameters: [Parameter] { namedParameters.map { $0.1 } }

  /// Fresh weights: Kaiming for the convolutions, PyTorch's defaults elsewhere, forget-gate bias 1.
  public func initialize(using generator: inout SeededGenerator) {
    encoder.initialize(using: &generator)
    embed.initialize(using: &generator)
    rnn.initialize(using: &generator)
    out.initialize(using: &generator)
    retrieval?.initialize(seed: generator.next())  // after the captioner's draws: they do not change
  }

  // MARK: Teacher-forced training

  /// The mean cross-entropy of `targetTokens` given `inputTokens` (both `[T, B·K]`, time-major) and
  /// the images (`[B, 3, S, S]`), or, with frozen convolutions, the encoder's `fc` input `features`
  /// (`[B, F]`, from the feature cache; `images` is then not read). Keeps what `backward` needs;
  /// `lastImageVectors` and `lastTopStates` hold v and h for the objective's other terms.
  public func forward(
    images: Tensor, features: Tensor? = nil, captionsPerImage: Int, steps: Int, inputTokens: [Int],
    targetTokens: [Int], training: Bool, generator: inout SeededGenerator
  ) -> Float {
    let batch = features?.shape[0] ?? images.shape[0]
    let rows = batch * captionsPerImage
    precondition(inputTokens.count == steps * rows && targetTokens.count == steps * rows)
    self.captionsPerImage = captionsPerImage

    // Frozen convolutions need no activations for backward (it stops at encoder.fc).
    let v =
      features.map { encoder.forward(fcInput: $0) }
      ?? encoder.forward(images, keepActivations: encoder.trainsConvolutions)  // [B, Dv]
    lastImageVectors = v
    let vRows = replicateRows(v, times: captionsPerImage)  // [R, Dv]
    var x = embed.forward(tokens: inputTokens)  // [T·R, E]
    x = embedDropout.forward(x, training: training, generator: &generator)
    var h = rnn.forward(inputs: x.view(shape: [steps, rows, config.embed]), image: vRows)  // [T, R, H]
    h = hiddenDropout.forward(h, training: training, generator: &generator)
    lastTopStates = h.view(shape: [steps * rows, config.hidden])
    let logits = out.forward(lastTopStates)  // [T·R, V]
    lastLogits = logits
    return crossEntropy.forward(logits: logits, targets: targetTokens, ignoreIndex: Vocabulary.pad)
  }

  /// Accumulates the gradient of the last `forward`'s loss into every parameter's `grad`; with
  /// `imageGrad`, also returns the gradient with respect to the input images (`[B, 3, S, S]`).
  /// The objective's other terms add their gradients through the two hooks: `addToTopStatesGrad`
  /// receives dh `[T·R, H]` (from the caption loss) before it enters the recurrence,
  /// `addToImageVectorsGrad` receives dv `[B, Dv]` before it enters the encoder.
  /// `gradientsFinal` is told each layer's parameters as soon as their gradients are complete (the
  /// output layer first, the first convolution last), so that a data-parallel run can start summing
  /// them while the backward pass goes on.
  @discardableResult
  public func backward(
    imageGrad: Bool = false, addToTopStatesGrad: ((Tensor) -> Void)? = nil,
    addToImageVectorsGrad: ((Tensor) -> Void)? = nil, gradientsFinal: (([Parameter]) -> Void)? = nil
  ) -> Tensor? {
    let logitsGrad = crossEntropy.backward()  // [T·R, V]
    var hGrad = out.backward(logitsGrad)!  // [T·R, H]
    gradientsFinal?(out.parameters)
    addToTopStatesGrad?(hGrad)
    hGrad = hiddenDropout.backward(hGrad)
    let steps = hGrad.count / (imageRows.shape[0] * config.hidden)
    let (xGrad, vRowsGrad) = rnn.backward(
      outputGrad: hGrad.view(shape: [steps, imageRows.shape[0], config.hidden]))
    gradientsFinal?(rnn.namedParameters.map { $0.1 })
    let embedGrad = embedDropout.backward(xGrad.view(shape: [xGrad.count / config.embed, config.embed]))
    embed.backward(embedGrad)
    gradientsFinal?([embed.weight])
    let vGrad = sumRowGroups(vRowsGrad, groupSize: captionsPerImage)  // [B, Dv]
    addToImageVectorsGrad?(vGrad)
    return encoder.backward(vGrad, needInputGrad: imageGrad, gradientsFinal: gradientsFinal)
  }

  /// [B, D] → [B·K, D]: row r is row r / K.
  private func replicateRows(_ v: Tensor, times k: Int) -> Tensor {
    let (batch, width) = (v.shape[0], v.shape[1])
    if imageRows.shape != [batch * k, width] { imageRows = Tensor(zeros: [batch * k, width]) }
    for b in 0..<batch {
      for j in 0..<k {
        (imageRows.pointer + (b * k + j) * width).update(from: v.pointer + b * width, count: width)
      }
    }
    return imageRows
  }

  /// [B·K, D] → [B, D]: the sum of each image's K rows (the gradient of `replicateRows`).
  private func sumRowGroups(_ g: Tensor, groupSize k: Int) -> Tensor {
    let width = g.shape[1]
    let batch = g.shape[0] / k
    if imageGrad.shape != [batch, width] { imageGrad = Tensor(zeros: [batch, width]) }
    imageGrad.fill(0)
    for b in 0..<batch {
      let target = imageGrad.pointer + b * width
      for j in 0..<k {
        let source = g.pointer + (b * k + j) * width
        for i in 0..<width { target[i] += source[i] }
      }
    }
    return imageGrad
  }

  // MARK: Inference

  /// Marks the weights as final, for a model loaded to caption and never trained: the encoder keeps
  /// its convolutions' Winograd weights (`Encoder.fixWeights`) and `step` keeps each token's
  /// first-layer input term (`TokenInputTerms`). Adopting new weights afterwards starts both afresh.
  public func fixWeights() {
    encoder.fixWeights()
    tokenInputTerms = TokenInputTerms(vocabularySize: config.vocabSize, width: rnn.layers[0].gateWidth)
  }

  /// The image vectors `v` ([B, Dv]) of normalised images ([B, 3, S, S]).
  public func encode(_ images: Tensor) -> Tensor {
    encoder.forward(images, keepActivations: false).clone()
  }
}

/// One token at a time for a batch of hypotheses: what greedy decoding, beam search and sampling
/// drive (the decoders' StepModel).
extension CaptionModel {
  public var vocabularySize: Int { config.vocabSize }

  public func initialState(imageVectors: Tensor) -> RecurrentState {
    rnn.makeState(image: imageVectors)
  }

  public func step(tokens: [Int], state: inout RecurrentState, logits: Tensor) {
    let rows = tokens.count
    let (e, h, v) = (config.embed, config.hidden, config.vocabSize)
    let top: Tensor  // [R, H]
    if let tokenInputTerms {
      let width = tokenInputTerms.width
      if stepTerms.shape != [rows, width] { stepTerms = Tensor(zeros: [rows, width]) }
      tokenInputTerms.fill(
        tokens: tokens, embedding: embed.weight.value, layer: rnn.layers[0], into: stepTerms)
      top = rnn.step(firstLayerTerms: stepTerms, state: &state)
    } else {
      if stepInput.shape != [rows, e] { stepInput = Tensor(zeros: [rows, e]) }
      let x = stepInput  // [R, E]: the tokens' embeddings
      for (r, token) in tokens.enumerated() {
        (x.pointer + r * e).update(from: embed.weight.value.pointer + token * e, count: e)
      }
      top = rnn.step(input: x, state: &state)
    }
    // logits = top · W_outᵀ + b_out
    BLAS.linear(
      m: rows, n: v, k: h, x: top.pointer, ldx: h, weight: out.weight.value.pointer, ldw: h,
      bias: out.bias.value.pointer, y: logits.pointer, ldy: v)
  }

  public func gather(_ state: RecurrentState, rows: [Int]) -> RecurrentState {
    state.gathered(rows: rows)
  }
}

// MARK: Weights in and out

extension CaptionModel {
  /// Takes the weights of a model file: each tensor becomes the parameter's value (no copy).
  /// Names and shapes must match exactly (ModelFile.load has checked them already).
  /// With `keepingNewRetrieval`, a file without the retrieval part leaves this model's (fresh) one.
  public func adopt(tensors: [String: Tensor], path: String, keepingNewRetrieval: Bool = false) throws {
    for (name, parameter) in namedParameters {
      if keepingNewRetrieval && name.hasPrefix("retrieval.") && tensors[name] == nil { continue }
      guard let tensor = tensors[name] else {
        throw CaptionError(.badModel, path: path, "tensor \(name) is missing")
      }
      guard tensor.shape == parameter.shape else {
        throw CaptionError(
          .badModel, path: path, "tensor \(name) has shape \(tensor.shape), expected \(parameter.shape)")
      }
      parameter.value = tensor
    }
    if tokenInputTerms != nil { fixWeights() }  // what was kept came from the old weights
  }

  /// The tensors to save, under their SPEC names.
  public var namedTensors: [(name: String, tensor: Tensor)] {
    namedParameters.map { (name: $0.0, tensor: $0.1.value) }
  }
}
