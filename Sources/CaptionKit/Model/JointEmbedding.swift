/// The image–sentence matching model (in the manner of Karpathy & Fei-Fei's bidirectional RNN and
/// VSE++): a sentence and an image are each mapped to a unit vector of one joint space of D
/// dimensions, and their score is the cosine, the dot product of the two unit vectors.
///
///     sentence:  x_t = embed(w_t)                         // [T, R, E]   the words only
///                o_t = [h→_t ; h←_t] = birnn(x)           // [T, R, 2H]  directions concatenated
///                p   = mean over the real words of o_t    // [R, 2H]
///                s   = normalise(textProjection(p))       // [R, D]
///     image:     u   = normalise(imageProjection(v))      // [B, D]      v: the captioner's image vector
///     score(u, s) = u · s
///
/// The recurrent layers read no image: they are built with a one-wide image input that is always
/// zero, so their `weight_iv` has no effect and is neither trained nor stored.

/// The `retrieval` object of the model configuration (SPEC §3).
public struct RetrievalConfig: Codable, Equatable, Sendable {
  public var cell: CellType
  /// Word embedding size E.
  public var embed: Int
  /// Hidden size H of each direction.
  public var hidden: Int
  /// Bidirectional layers.
  public var layers: Int
  /// Joint space size D.
  public var dim: Int
  /// λ of `describe --rerank` (score = log p / length + λ · cosine), when calibrated.
  public var rerankWeight: Float?

  enum CodingKeys: String, CodingKey {
    case cell, embed, hidden, layers, dim
    case rerankWeight = "rerank_weight"
  }

  public init(
    cell: CellType = .gru, embed: Int = 64, hidden: Int = 128, layers: Int = 1, dim: Int = 128,
    rerankWeight: Float? = nil
  ) {
    self.cell = cell
    self.embed = embed
    self.hidden = hidden
    self.layers = layers
    self.dim = dim
    self.rerankWeight = rerankWeight
  }

  /// The sizes a model file may hold; the reason names the key.
  public func validate() throws {
    for (key, value) in [("embed", embed), ("hidden", hidden), ("layers", layers), ("dim", dim)]
    where value < 1 || value > 65536 {
      throw CaptionError(.invalidArgument, path: "config", "retrieval \(key) \(value) is outside 1...65536")
    }
    if layers > 64 {
      throw CaptionError(.invalidArgument, path: "config", "retrieval layers \(layers) is over 64")
    }
  }

  /// The tensors of the retrieval part (SPEC §3), in order, for a vocabulary of `vocabSize` words and
  /// image vectors of `dv`.
  public func expectedTensorShapes(vocabSize: Int, dv: Int) -> [(name: String, shape: [Int])] {
    var result: [(name: String, shape: [Int])] = [("retrieval.embed.weight", [vocabSize, embed])]
    let rows = cell.gates * hidden
    for l in 0..<layers {
      for direction in ["fwd", "bwd"] {
        let prefix = "retrieval.rnn.\(l).\(direction)."
        result.append((prefix + "weight_ih", [rows, l == 0 ? embed : 2 * hidden]))
        result.append((prefix + "weight_hh", [rows, hidden]))
        result.append((prefix + "bias_ih", [rows]))
        result.append((prefix + "bias_hh", [rows]))
        if cell == .peephole { result.append((prefix + "weight_peep", [3, hidden])) }
      }
    }
    result.append(("retrieval.text_proj.weight", [dim, 2 * hidden]))
    result.append(("retrieval.text_proj.bias", [dim]))
    result.append(("retrieval.image_proj.weight", [dim, dv]))
    result.append(("retrieval.image_proj.bias", [dim]))
    return result
  }
}

/// Row-wise L2 normalisation, y = x / ‖x‖ (a zero row stays zero).
public final class L2Normalize {
  private var output: Tensor?  // [N, D]
  private var norms: [Float] = []  // [N] ‖x‖ per row
  private var inputGrad: Tensor?  // [N, D]

  public init() {}

  public func forward(_ x: Tensor) -> Tensor {
    let (rows, width) = (x.shape[0], x.count / x.shape[0])
    let y = reuseWorkspace(&output, shape: [rows, width])
    norms = [Float](repeating: 0, count: rows)
    for r in 0..<rows {
      let norm = Float(Elementwise.sumOfSquares(x.pointer + r * width, count: width).squareRoot())
      norms[r] = norm
      let inverse: Float = norm > 0 ? 1 / norm : 0
      for j in 0..<width { y.pointer[r * width + j] = x.pointer[r * width + j] * inverse }
    }
    return y
  }

  /// dx = (dy − y (y · dy)) / ‖x‖: the part of dy along y does not change the direction.
  public func backward(_ outputGrad: Tensor) -> Tensor {
    guard let y = output else { preconditionFailure("L2Normalize.backward before forward") }
    let (rows, width) = (y.shape[0], y.shape[1])
    let dx = reuseWorkspace(&inputGrad, shape: [rows, width])
    for r in 0..<rows {
      let (yRow, dyRow, dxRow) = (
        y.pointer + r * width, outputGrad.pointer + r * width, dx.pointer + r * width
      )
      var dot: Float = 0
      for j in 0..<width { dot += yRow[j] * dyRow[j] }
      let inverse: Float = norms[r] > 0 ? 1 / norms[r] : 0
      for j in 0..<width { dxRow[j] = (dyRow[j] - yRow[j] * dot) * inverse }
    }
    return dx
  }
}

/// Words → one unit vector of the joint space: embedding, deep bidirectional RNN, mean over the real
/// words, linear projection, L2 normalisation.
public final class SentenceEncoder {
  public let config: RetrievalConfig
  public let embed: Embedding
  public let rnn: BidirectionalStack
  public let projection: Linear
  let normalize = L2Normalize()

  private var zeroImage = Tensor(zeros: [0])  // [R, 1]: the recurrent layers' unused image input
  private var pooled = Tensor(zeros: [0])  // [R, 2H]
  private var pooledGrad = Tensor(zeros: [0])  // [T, R, 2H]
  private var lengths: [Int] = []
  private var steps = 0

  public init(config: RetrievalConfig, vocabularySize: Int) {
    self.config = config
    embed = Embedding(vocabularySize: vocabularySize, embeddingSize: config.embed)
    rnn = BidirectionalStack(
      cell: config.cell, inputSize: config.embed, hiddenSize: config.hidden, imageSize: 1,
      layers: config.layers, imageInput: .every)
    projection = Linear(inFeatures: 2 * config.hidden, outFeatures: config.dim)
  }

  /// Relative names (`embed.weight`, `rnn.0.fwd.weight_ih`, …, `rnn.0.bwd.…`, `text_proj.bias`); no
  /// `weight_iv`. (`fwd`/`bwd`, not the stack's `forward`/`backward`: a PyTorch module cannot have a
  /// child named `forward`.)
  public var namedParameters: [(String, Parameter)] {
    let layers: [(String, Parameter)] = rnn.layers.enumerated().flatMap { l, pair in
      pair.forward.namedParameters.map { ("rnn.\(l).fwd.\($0.0)", $0.1) }
        + pair.backward.namedParameters.map { ("rnn.\(l).bwd.\($0.0)", $0.1) }
    }
    return [("embed.weight", embed.weight)] + layers.filter { !$0.0.hasSuffix(".weight_iv") }
      + [("text_proj.weight", projection.weight), ("text_proj.bias", projection.bias)]
  }

  public func initialize(using generator: inout SeededGenerator) {
    embed.initialize(using: &generator)
    rnn.initialize(using: &generator)
    projection.initialize(using: &generator)
  }

  /// The unit sentence vectors [R, D] of the first `steps` time steps of `tokens` (time-major word
  /// ids, [T', R] with T' ≥ `steps`, padded after each row's `lengths[r]` ≤ `steps` words; what is
  /// there is not read). A row of no words gives normalise(bias). The result is a workspace.
  public func forward(tokens: [Int], steps: Int, lengths: [Int]) -> Tensor {
    let rows = lengths.count
    precondition(tokens.count >= steps * rows && tokens.count % max(rows, 1) == 0 && steps >= 1)
    self.lengths = lengths
    self.steps = steps
    // Padding reads <pad>, so its (zero) gradient lands on a row no real word uses.
    var words = Array(tokens[0..<(steps * rows)])
    for t in 0..<steps { for r in 0..<rows where t >= lengths[r] { words[t * rows + r] = Vocabulary.pad } }
    let x = embed.forward(tokens: words).view(shape: [steps, rows, config.embed])
    if zeroImage.shape != [rows, 1] { zeroImage = Tensor(zeros: [rows, 1]) }
    let o = rnn.forward(inputs: x, image: zeroImage, lengths: lengths)  // [T, R, 2H], zero at padding
    // mean over each row's real words
    let width = 2 * config.hidden
    if pooled.shape != [rows, width] { pooled = Tensor(zeros: [rows, width]) }
    pooled.fill(0)
    for r in 0..<rows where lengths[r] > 0 {
      let target = pooled.pointer + r * width
      for t in 0..<lengths[r] {
        Elementwise.add(o.pointer + (t * rows + r) * width, into: target, count: width)
      }
      Elementwise.scale(target, by: 1 / Float(lengths[r]), count: width)
    }
    return normalize.forward(projection.forward(pooled))
  }

  /// Accumulates the parameters' gradients from dL/d(sentence vectors) [R, D].
  public func backward(_ outputGrad: Tensor) {
    let rows = lengths.count
    let width = 2 * config.hidden
    let dp = projection.backward(normalize.backward(outputGrad))!  // [R, 2H]
    if pooledGrad.shape != [steps, rows, width] { pooledGrad = Tensor(zeros: [steps, rows, width]) }
    pooledGrad.fill(0)
    for r in 0..<rows where lengths[r] > 0 {
      let share = 1 / Float(lengths[r])
      for t in 0..<lengths[r] {
        let target = pooledGrad.pointer + (t * rows + r) * width
        for j in 0..<width { target[j] = dp.pointer[r * width + j] * share }
      }
    }
    let (dx, _) = rnn.backward(outputGrad: pooledGrad)
    embed.backward(dx.view(shape: [steps * rows, config.embed]))
  }
}

/// Image vectors v → unit vectors of the joint space: a linear projection, L2 normalisation.
public final class ImageProjection {
  public let projection: Linear
  let normalize = L2Normalize()

  public init(config: RetrievalConfig, imageSize dv: Int) {
    projection = Linear(inFeatures: dv, outFeatures: config.dim)
  }

  public var namedParameters: [(String, Parameter)] {
    [("image_proj.weight", projection.weight), ("image_proj.bias", projection.bias)]
  }

  public func initialize(using generator: inout SeededGenerator) { projection.initialize(using: &generator) }

  /// [B, Dv] → [B, D] unit rows (a workspace).
  public func forward(_ v: Tensor) -> Tensor { normalize.forward(projection.forward(v)) }

  /// dL/dv [B, Dv] (a workspace) from dL/du [B, D]; accumulates the projection's gradients.
  public func backward(_ outputGrad: Tensor) -> Tensor {
    projection.backward(normalize.backward(outputGrad))!
  }
}

/// The retrieval part of a caption model: both sides of the joint space.
public final class RetrievalModel {
  public let config: RetrievalConfig
  public let sentences: SentenceEncoder
  public let images: ImageProjection

  public init(config: RetrievalConfig, vocabularySize: Int, imageSize dv: Int) {
    self.config = config
    sentences = SentenceEncoder(config: config, vocabularySize: vocabularySize)
    images = ImageProjection(config: config, imageSize: dv)
  }

  /// Under SPEC §3's names (`retrieval.embed.weight`, …), in `expectedTensorShapes`' order.
  public var namedParameters: [(String, Parameter)] {
    (sentences.namedParameters + images.namedParameters).map { ("retrieval." + $0.0, $0.1) }
  }

  /// Drawn from its own generator, so the captioner's weights do not depend on it.
  public func initialize(seed: UInt64) {
    var generator = SeededGenerator(seed: seed &+ 0x2E7_21E5)
    sentences.initialize(using: &generator)
    images.initialize(using: &generator)
  }

  /// The words of caption rows given as decoder targets `[T, R]` (`w1 … wn <end> <pad> …`):
  /// each row's length is its count of words before `<end>` or `<pad>`.
  public static func lengths(targets: [Int], steps: Int, rows: Int) -> [Int] {
    (0..<rows).map { r in
      var n = 0
      while n < steps,
        targets[n * rows + r] >= Vocabulary.firstWord || targets[n * rows + r] == Vocabulary.unk
      {
        n += 1
      }
      return n
    }
  }
}

extension CaptionError {
  /// What a command that needs the retrieval part says of a model without one (SPEC §3b).
  public static func noRetrievalPart(path: String) -> CaptionError {
    CaptionError(
      .badModel, path: path,
      "the model has no retrieval part (train one: caption train --init MODEL --retrieval 1 --retrieval-only …)"
    )
  }
}
