import FoundationEssentials
import Glibc

/// How the encoder turns its last feature map into a vector (SPEC §3).
public enum PoolMode: String, Codable, Sendable { case avg, flatten }

/// One entry of the encoder's layer list: a 3×3 conv with that many output channels, or a 2×2 max-pool.
public enum EncoderLayer: Equatable, Sendable, Codable, CustomStringConvertible {
  case conv(Int)
  case maxPool

  public init(from decoder: Swift.Decoder) throws {
    let container = try decoder.singleValueContainer()
    if let channels = try? container.decode(Int.self) {
      guard channels > 0 else {
        throw DecodingError.dataCorruptedError(
          in: container, debugDescription: "conv channels must be positive")
      }
      self = .conv(channels)
    } else if try container.decode(String.self) == "M" {
      self = .maxPool
    } else {
      throw DecodingError.dataCorruptedError(
        in: container, debugDescription: "a layer is a channel count or \"M\"")
    }
  }

  public func encode(to encoder: Swift.Encoder) throws {
    var container = encoder.singleValueContainer()
    switch self {
    case .conv(let channels): try container.encode(channels)
    case .maxPool: try container.encode("M")
    }
  }

  public var description: String {
    switch self {
    case .conv(let channels): return String(channels)
    case .maxPool: return "M"
    }
  }

  /// Parses `32,32,M,64` (the command-line form).
  public static func parseList(_ text: String) -> [EncoderLayer]? {
    var layers: [EncoderLayer] = []
    for part in text.split(separator: ",") {
      let item = part.trimmingWhitespace()
      if item == "M" || item == "m" {
        layers.append(.maxPool)
      } else if let channels = Int(item), channels > 0 {
        layers.append(.conv(channels))
      } else {
        return nil
      }
    }
    return layers.isEmpty ? nil : layers
  }
}

/// The model configuration stored in a model file's `config` metadata (SPEC §3).
public struct ModelConfig: Codable, Equatable, Sendable {
  public var imageSize: Int
  public var layers: [EncoderLayer]
  public var dv: Int
  public var embed: Int
  public var hidden: Int
  public var cell: CellType
  public var rnnLayers: Int
  public var vocabSize: Int
  public var imageInput: ImageInput
  public var pool: PoolMode
  /// Dropout probability on the decoder's embeddings and top hidden state (training only).
  public var dropout: Float
  /// The image–sentence retrieval part (SPEC §3), when the model has one.
  public var retrieval: RetrievalConfig?
  /// `describe`'s familiarity threshold (SPEC §3c), when a run calibrated it; the file then holds
  /// the tensors `familiarity.mean` and `familiarity.whiten`.
  public var familiarThreshold: Float?
  /// What the familiarity score reads (SPEC §3c); nil in a file means `imageVector`, the older kind.
  public var familiarFeatures: FamiliarityFeatures?

  enum CodingKeys: String, CodingKey {
    case imageSize = "image_size"
    case layers, dv, embed, hidden, cell
    case rnnLayers = "rnn_layers"
    case vocabSize = "vocab_size"
    case imageInput = "image_input"
    case pool, dropout, retrieval
    case familiarThreshold = "familiar_threshold"
    case familiarFeatures = "familiar_features"
  }

  public init(
    imageSize: Int = 64,
    layers: [EncoderLayer] = [.conv(32), .conv(32), .maxPool, .conv(64), .conv(64), .maxPool],
    dv: Int = 256, embed: Int = 256, hidden: Int = 512, cell: CellType = .lstm, rnnLayers: Int = 1,
    vocabSize: Int, imageInput: ImageInput = .every, pool: PoolMode = .avg, dropout: Float = 0
  ) {
    self.imageSize = imageSize
    self.layers = layers
    self.dv = dv
    self.embed = embed
    self.hidden = hidden
    self.cell = cell
    self.rnnLayers = rnnLayers
    self.vocabSize = vocabSize
    self.imageInput = imageInput
    self.pool = pool
    self.dropout = dropout
  }

  public init(from decoder: Swift.Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    imageSize = try c.decode(Int.self, forKey: .imageSize)
    layers = try c.decode([EncoderLayer].self, forKey: .layers)
    dv = try c.decode(Int.self, forKey: .dv)
    embed = try c.decode(Int.self, forKey: .embed)
    hidden = try c.decode(Int.self, forKey: .hidden)
    cell = try c.decode(CellType.self, forKey: .cell)
    rnnLayers = try c.decode(Int.self, forKey: .rnnLayers)
    vocabSize = try c.decode(Int.self, forKey: .vocabSize)
    imageInput = try c.decodeIfPresent(ImageInput.self, forKey: .imageInput) ?? .every
    pool = try c.decodeIfPresent(PoolMode.self, forKey: .pool) ?? .avg
    dropout = try c.decodeIfPresent(Float.self, forKey: .dropout) ?? 0
    retrieval = try c.decodeIfPresent(RetrievalConfig.self, forKey: .retrieval)
    familiarThreshold = try c.decodeIfPresent(Float.self, forKey: .familiarThreshold)
    familiarFeatures = try c.decodeIfPresent(FamiliarityFeatures.self, forKey: .familiarFeatures)
  }

  /// The feature map after the encoder's layers: (channels, height, width). Pools floor odd sizes.
  public var encoderOutputShape: (channels: Int, height: Int, width: Int) {
    var channels = 3
    var size = imageSize
    for layer in layers {
      switch layer {
      case .conv(let out): channels = out
      case .maxPool: size /= 2
      }
    }
    return (channels, size, size)
  }

  /// The width of the encoder's block means (SPEC §3c): the channels after each max-pool, and after
  /// the last layer when it is not a pool.
  public var blockMeansWidth: Int {
    var (channels, width) = (3, 0)
    for layer in layers {
      switch layer {
      case .conv(let out): channels = out
      case .maxPool: width += channels
      }
    }
    if case .conv = layers.last { width += channels }
    return width
  }

  /// The width of what the familiarity score reads: v's (D_v) or the block means'.
  public var familiarityWidth: Int {
    (familiarFeatures ?? .imageVector) == .blockMeans ? blockMeansWidth : dv
  }

  /// Checks the values a model file or the command line may get wrong; the reason names the key,
  /// as `naming` spells it (the command line passes its flags' names).
  public func validate(naming name: (String) -> String = { $0 }) throws {
    func fail(_ reason: String) throws -> Never {
      throw CaptionError(.invalidArgument, path: "config", reason)
    }
    if imageSize < 1 || imageSize > 4096 {
      try fail("\(name("image_size")) \(imageSize) is outside 1...4096")
    }
    if !layers.contains(where: { if case .conv = $0 { return true } else { return false } }) {
      try fail("\(name("layers")) must hold at least one conv layer")
    }
    if encoderOutputShape.height < 1 {
      try fail("\(name("layers")) pool \(name("image_size")) \(imageSize) below 1 pixel")
    }
    for (key, value) in [("dv", dv), ("embed", embed), ("hidden", hidden), ("rnn_layers", rnnLayers)]
    where value < 1 || value > 65536 {
      try fail("\(name(key)) \(value) is outside 1...65536")
    }
    if vocabSize < 4 { try fail("\(name("vocab_size")) \(vocabSize) is below 4 (the special tokens)") }
    if !(dropout >= 0 && dropout < 1) { try fail("\(name("dropout")) \(dropout) is outside [0, 1)") }
    try retrieval?.validate()
    if let familiarThreshold, !(familiarThreshold >= 0 && familiarThreshold.isFinite) {
      try fail("familiar_threshold \(familiarThreshold) is not a finite number ≥ 0")
    }
    if familiarFeatures != nil && familiarThreshold == nil {
      try fail("familiar_features without familiar_threshold")
    }
  }
}
