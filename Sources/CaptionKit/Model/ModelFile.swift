import FoundationEssentials
import Glibc

extension ModelConfig {
  /// Every tensor a model of this configuration holds, with its shape, in SPEC §3's order
  /// (encoder convs, encoder fc, embedding, each recurrent layer, output).
  public func expectedTensorShapes() -> [(name: String, shape: [Int])] {
    var result: [(name: String, shape: [Int])] = []
    // Encoder: conv k maps C_in → C_out channels with 3×3 kernels.
    var channels = 3
    var k = 0
    for case .conv(let out) in layers {
      result.append(("encoder.conv\(k).weight", [out, channels, 3, 3]))
      result.append(("encoder.conv\(k).bias", [out]))
      channels = out
      k += 1
    }
    let last = encoderOutputShape
    let features = pool == .avg ? last.channels : last.channels * last.height * last.width
    result.append(("encoder.fc.weight", [dv, features]))
    result.append(("encoder.fc.bias", [dv]))
    // Decoder: embedding, the recurrent stack (G·H rows in PyTorch's gate order), the output layer.
    result.append(("decoder.embed.weight", [vocabSize, embed]))
    let rows = cell.gates * hidden
    for l in 0..<rnnLayers {
      let prefix = "decoder.rnn.\(l)."
      result.append((prefix + "weight_ih", [rows, l == 0 ? embed : hidden]))
      result.append((prefix + "weight_hh", [rows, hidden]))
      result.append((prefix + "weight_iv", [rows, dv]))
      result.append((prefix + "bias_ih", [rows]))
      result.append((prefix + "bias_hh", [rows]))
      if cell == .peephole { result.append((prefix + "weight_peep", [3, hidden])) }
    }
    result.append(("decoder.out.weight", [vocabSize, hidden]))
    result.append(("decoder.out.bias", [vocabSize]))
    if let retrieval { result += retrieval.expectedTensorShapes(vocabSize: vocabSize, dv: dv) }
    if familiarThreshold != nil {
      let width = familiarityWidth
      result += [(Familiarity.meanName, [width]), (Familiarity.whitenName, [width, width])]
    }
    return result
  }

  /// The parameter count of each tensor group that `caption info` reports, in order:
  /// `encoder convs`, `encoder fc`, `embedding`, `rnn layer l` for each l, `output`.
  public func parameterGroups() -> [(group: String, count: Int)] {
    var groups: [(group: String, count: Int)] = []
    for (name, shape) in expectedTensorShapes() where !name.hasPrefix("familiarity.") {  // not learnt
      let group: String
      if name.hasPrefix("encoder.conv") {
        group = "encoder convs"
      } else if name.hasPrefix("encoder.fc") {
        group = "encoder fc"
      } else if name.hasPrefix("decoder.embed") {
        group = "embedding"
      } else if name.hasPrefix("decoder.rnn.") {
        group = "rnn layer " + name.split(separator: ".")[2]
      } else if name.hasPrefix("retrieval.") {
        group = "retrieval"
      } else {
        group = "output"
      }
      let count = shape.reduce(1, *)
      if groups.last?.group == group {
        groups[groups.count - 1].count += count
      } else {
        groups.append((group, count))
      }
    }
    return groups
  }
}

/// A model as stored on disk (SPEC §3): configuration, vocabulary, preprocessing, optional training
/// provenance, and the tensors by their SPEC names.
public struct ModelFile {
  public var config: ModelConfig
  public var vocabulary: Vocabulary
  /// Per-channel (R, G, B) normalisation applied to pixels scaled to [0, 1].
  public var mean: [Float]
  public var std: [Float]
  /// JSON text about how the model was trained (command, data, epochs, metrics), if kept.
  public var provenance: String?
  public var tensors: [String: Tensor]

  public static let format = "caption-model"
  public static let version = "1"

  public init(
    config: ModelConfig, vocabulary: Vocabulary, mean: [Float] = CaptionKit.Preprocess.imagenetMean,
    std: [Float] = CaptionKit.Preprocess.imagenetStd, provenance: String? = nil, tensors: [String: Tensor]
  ) {
    self.config = config
    self.vocabulary = vocabulary
    self.mean = mean
    self.std = std
    self.provenance = provenance
    self.tensors = tensors
  }

  /// The total number of parameters.
  public var parameterCount: Int { tensors.values.reduce(0) { $0 + $1.count } }

  /// The `preprocess` metadata (SPEC §3).
  private struct Preprocess: Codable {
    var image_size: Int
    var mean: [Float]
    var std: [Float]
  }

  // MARK: - Loading

  /// Reads and validates a model file; every defect is a `.badModel` error naming the file and the
  /// metadata key or tensor at fault.
  public static func load(path: String) throws -> ModelFile {
    let file = try Safetensors.read(path: path)
    func bad(_ reason: String) -> CaptionError { CaptionError(.badModel, path: path, reason) }
    func required(_ key: String) throws -> String {
      guard let value = file.metadata[key] else { throw bad("metadata key \"\(key)\" is missing") }
      return value
    }

    guard try required("format") == format else {
      throw bad("metadata format is \"\(file.metadata["format"]!.prefix(40))\", not \"\(format)\"")
    }
    guard try required("version") == version else {
      throw bad(
        "metadata version \"\(file.metadata["version"]!.prefix(40))\" is not supported (only \(version))")
    }

    // config: decodes, validates, and keeps every size small enough that shapes cannot overflow.
    let config: ModelConfig
    do {
      config = try JSONDecoder().decode(ModelConfig.self, from: Data(try required("config").utf8))
    } catch let error as CaptionError {
      throw error
    } catch {
      throw bad("metadata config is not a valid model configuration: \(CaptionError.decodingReason(error))")
    }
    do {
      try config.validate()
    } catch let error as CaptionError {
      throw bad("metadata config: \(error.reason)")
    }
    for case .conv(let channels) in config.layers where channels > 65536 {
      throw bad("metadata config: conv channels \(channels) is over 65536")
    }
    if config.layers.count > 1024 { throw bad("metadata config: more than 1024 encoder layers") }

    // vocab: a JSON array of vocab_size strings, the specials first.
    let words: [String]
    do {
      words = try JSONDecoder().decode([String].self, from: Data(try required("vocab").utf8))
    } catch let error as CaptionError {
      throw error
    } catch {
      throw bad("metadata vocab is not a JSON array of strings: \(CaptionError.decodingReason(error))")
    }
    guard words.count == config.vocabSize else {
      throw bad("metadata vocab holds \(words.count) words but config vocab_size is \(config.vocabSize)")
    }
    let vocabulary: Vocabulary
    do {
      vocabulary = try Vocabulary(words: words)
    } catch let error as CaptionError {
      throw bad("metadata vocab: \(error.reason)")
    }

    // preprocess: the config's image size, three finite means, three positive finite deviations.
    let preprocess: Preprocess
    do {
      preprocess = try JSONDecoder().decode(Preprocess.self, from: Data(try required("preprocess").utf8))
    } catch let error as CaptionError {
      throw error
    } catch {
      throw bad(
        "metadata preprocess is not {\"image_size\", \"mean\", \"std\"}: \(CaptionError.decodingReason(error))"
      )
    }
    guard preprocess.image_size == config.imageSize else {
      throw bad(
        "metadata preprocess image_size \(preprocess.image_size) differs from config image_size \(config.imageSize)"
      )
    }
    guard preprocess.mean.count == 3, preprocess.mean.allSatisfy({ $0.isFinite }) else {
      throw bad("metadata preprocess mean must be 3 finite numbers, not \(preprocess.mean)")
    }
    guard preprocess.std.count == 3, preprocess.std.allSatisfy({ $0.isFinite && $0 > 0 }) else {
      throw bad("metadata preprocess std must be 3 positive numbers, not \(preprocess.std)")
    }

    // provenance: optional, but JSON when present.
    let provenance = file.metadata["provenance"]
    if let provenance, !JSONText.isJSON(provenance) {
      throw bad("metadata provenance is not JSON")
    }

    let model = ModelFile(
      config: config, vocabulary: vocabulary, mean: preprocess.mean, std: preprocess.std,
      provenance: provenance, tensors: file.tensors)
    try model.checkTensors(path: path)
    if let name = file.nonFinite.first {  // the file's tensors are the model's (`checkTensors`)
      throw bad("tensor \"\(name)\" holds a value that is not finite (NaN or infinity)")
    }
    return model
  }

  /// Exactly the tensors `config` needs, with their shapes; the error names the tensor.
  public func checkTensors(path: String) throws {
    func bad(_ reason: String) -> CaptionError { CaptionError(.badModel, path: path, reason) }
    let expected = config.expectedTensorShapes()
    for (name, shape) in expected {
      guard let tensor = tensors[name] else {
        throw bad("tensor \"\(name)\" is missing (expected shape \(shape))")
      }
      guard tensor.shape == shape else {
        throw bad("tensor \"\(name)\" has shape \(tensor.shape), expected \(shape)")
      }
    }
    let names = Set(expected.map(\.name))
    if let extra = tensors.keys.sorted().first(where: { !names.contains($0) }) {
      throw bad("tensor \"\(extra)\" is not part of a \(config.cell.rawValue) model of this configuration")
    }
  }

  // MARK: - Saving

  /// The metadata SPEC §3 asks for.
  public func metadata() throws -> [String: String] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    func json<T: Encodable>(_ value: T) throws -> String {
      String(decoding: try encoder.encode(value), as: UTF8.self)
    }
    var metadata = [
      "format": ModelFile.format,
      "version": ModelFile.version,
      "config": try json(config),
      "vocab": try json(vocabulary.words),
      "preprocess": try json(Preprocess(image_size: config.imageSize, mean: mean, std: std)),
    ]
    if let provenance { metadata["provenance"] = provenance }
    return metadata
  }

  /// Writes the model atomically, after checking that its tensors are exactly the config's.
  public func save(path: String) throws {
    try checkTensors(path: path)
    guard vocabulary.count == config.vocabSize else {
      throw CaptionError(
        .badModel, path: path,
        "vocabulary holds \(vocabulary.count) words but vocab_size is \(config.vocabSize)")
    }
    try Safetensors.write(path: path, tensors: tensors.map { ($0.key, $0.value) }, metadata: try metadata())
  }

  // MARK: - Summary

  /// What `caption info` prints: configuration, vocabulary, parameters per tensor group,
  /// preprocessing, provenance (pretty-printed JSON).
  public func summary(path: String) -> String {
    var out = "model: \(path)\n"
    out += "config:\n"
    out += "  image_size  \(config.imageSize)\n"
    out += "  layers      [\(config.layers.map(\.description).joined(separator: ", "))]\n"
    out += "  pool        \(config.pool.rawValue)\n"
    out += "  dv          \(config.dv)\n"
    out += "  embed       \(config.embed)\n"
    out += "  hidden      \(config.hidden)\n"
    out += "  cell        \(config.cell.rawValue)\n"
    out += "  rnn_layers  \(config.rnnLayers)\n"
    out += "  image_input \(config.imageInput.rawValue)\n"
    out += "  vocab_size  \(config.vocabSize)\n"
    out += "  dropout     \(config.dropout)\n"

    let firstWords = vocabulary.words.dropFirst(4).prefix(10)
    out += "vocabulary: \(vocabulary.count) words"
    if !firstWords.isEmpty {
      out += " (first: \(firstWords.joined(separator: " "))\(vocabulary.count > 14 ? " ..." : ""))"
    }
    out += "\n"

    out += "parameters:\n"
    let groups = config.parameterGroups()
    let width = groups.map(\.group.count).max() ?? 0
    for (group, count) in groups {
      out +=
        "  " + group.padded(to: width) + "  " + ModelFile.grouped(count)
        + "\n"
    }
    out +=
      "  " + "total".padded(to: width) + "  "
      + ModelFile.grouped(groups.reduce(0) { $0 + $1.count }) + "\n"

    func list(_ values: [Float]) -> String { "[" + values.map { "\($0)" }.joined(separator: ", ") + "]" }
    out += "preprocessing: size \(config.imageSize), mean \(list(mean)), std \(list(std))\n"

    if let provenance = provenance {
      out += "provenance:\n"
      if let object = JSONText.parse(provenance), let pretty = try? JSONText.encode(object, pretty: true) {
        for line in pretty.split(separator: "\n", omittingEmptySubsequences: false) {
          out += "  " + line + "\n"
        }
      } else {
        out += "  " + provenance + "\n"
      }
    }
    return out
  }

  /// What `caption info --json` prints (and a server's model endpoint): the summary as one JSON
  /// object with sorted keys: `model` (the path), `config` (as the file's metadata holds it),
  /// `vocabulary` {`size`, `first`: up to 10 words after the 4 special ones}, `parameters`
  /// {`groups`: [{`group`, `count`}], `total`}, `preprocessing` {`size`, `mean`, `std`} and
  /// `provenance` (the kept JSON, the text when it is not JSON, or null).
  public func summaryJSON(path: String) -> String {
    func number(_ value: Float) -> Double { Double("\(value)") ?? Double(value) }  // 0.485, not 0.48500001
    let configObject: Any =
      (try? JSONEncoder().encode(config)).flatMap { JSONText.parse(String(decoding: $0, as: UTF8.self)) }
      ?? [String: Any]()
    let groups = config.parameterGroups()
    var provenanceObject: Any = JSONValue.null
    if let provenance { provenanceObject = JSONText.parse(provenance) ?? .string(provenance) }
    let object: [String: Any] = [
      "model": path,
      "config": configObject,
      "vocabulary": ["size": vocabulary.count, "first": Array(vocabulary.words.dropFirst(4).prefix(10))],
      "parameters": [
        "groups": groups.map { ["group": $0.group, "count": $0.count] as [String: Any] },
        "total": groups.reduce(0) { $0 + $1.count },
      ],
      "preprocessing": ["size": config.imageSize, "mean": mean.map(number), "std": std.map(number)],
      "provenance": provenanceObject,
    ]
    return (try? JSONText.encode(object)) ?? "{}"
  }

  /// 1234567 → "1,234,567".
  static func grouped(_ value: Int) -> String {
    let digits = Array(String(value))
    var result = ""
    for (index, digit) in digits.enumerated() {
      if index > 0 && (digits.count - index) % 3 == 0 { result += "," }
      result.append(digit)
    }
    return result
  }
}
