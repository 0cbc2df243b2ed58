import FoundationEssentials
import Glibc

/// A VGG encoder's convolutions and the preprocessing they were trained with, read from one of:
///
/// - a `caption` encoder file (SPEC §3a): `encoder.conv{k}.weight`/`.bias` and the metadata
///   `format` = `caption-encoder`, `layers`, `preprocess` (what `scripts/import_torchvision_vgg.py`
///   writes);
/// - a safetensors file of a torchvision VGG state dict, in its own names (`features.N.weight`,
///   `features.N.bias`; `classifier.*` is ignored): the layer list comes from the indices of the
///   convolutions, 224 px and ImageNet's mean and std from torchvision's training recipe;
/// - any `caption` model file (its encoder's convolutions, layer list and preprocessing).
public struct EncoderFile {
  public enum Source: String, Sendable {
    case encoder = "caption encoder"
    case torchvision = "torchvision VGG"
    case model = "caption model"
  }

  public var source: Source
  public var layers: [EncoderLayer]
  public var imageSize: Int
  public var mean: [Float]
  public var std: [Float]
  /// conv k's weight [C_out, C_in, 3, 3] and bias [C_out], in the order of `layers`.
  public var convolutions: [(weight: Tensor, bias: Tensor)]

  /// The `preprocess` metadata: what the weights were trained to see.
  private struct PreprocessMetadata: Codable {
    var image_size: Int
    var mean: [Float]
    var std: [Float]
  }

  public static let format = "caption-encoder"
  public static let version = "1"
  /// torchvision's VGG recipe: 224 px crops, ImageNet's statistics.
  public static let torchvisionImageSize = 224

  public init(
    source: Source, layers: [EncoderLayer], imageSize: Int, mean: [Float], std: [Float],
    convolutions: [(weight: Tensor, bias: Tensor)]
  ) {
    self.source = source
    self.layers = layers
    self.imageSize = imageSize
    self.mean = mean
    self.std = std
    self.convolutions = convolutions
  }

  /// The convolutions under the model file's names (`encoder.conv{k}.weight`, `.bias`).
  public var namedTensors: [(name: String, tensor: Tensor)] {
    convolutions.enumerated().flatMap { k, conv in
      [
        (name: "encoder.conv\(k).weight", tensor: conv.weight),
        (name: "encoder.conv\(k).bias", tensor: conv.bias),
      ]
    }
  }

  /// The names of torchvision's VGG configurations, for messages (`vgg11` … `vgg19`).
  public static let torchvisionConfigurations: [String: [EncoderLayer]] = {
    func list(_ text: String) -> [EncoderLayer] { EncoderLayer.parseList(text)! }
    return [
      "vgg11": list("64,M,128,M,256,256,M,512,512,M,512,512,M"),
      "vgg13": list("64,64,M,128,128,M,256,256,M,512,512,M,512,512,M"),
      "vgg16": list("64,64,M,128,128,M,256,256,256,M,512,512,512,M,512,512,512,M"),
      "vgg19": list("64,64,M,128,128,M,256,256,256,256,M,512,512,512,512,M,512,512,512,512,M"),
    ]
  }()

  // MARK: - Loading

  /// Reads any of the three kinds; every defect is one `.badModel` error naming the file.
  public static func load(path: String) throws -> EncoderFile {
    // Only the convolutions' bytes are read (a torchvision file's classifier is most of it).
    let file: SafetensorsFile
    do {
      file = try Safetensors.read(path: path) { name in
        (name.hasPrefix("features.") || name.hasPrefix("encoder.conv"))
          && (name.hasSuffix(".weight") || name.hasSuffix(".bias"))
      }
    } catch let error as CaptionError where error.kind == .badModel {
      // torch.save writes a zip archive: say what to do with it.
      var start: [UInt8] = [0, 0]
      if let (descriptor, _) = try? RegularFile.open(path) {
        if pread(descriptor, &start, 2, 0) != 2 { start = [0, 0] }
        _ = Glibc.close(descriptor)
      }
      if start == [0x50, 0x4B] {
        throw CaptionError(
          .badModel, path: path,
          "a PyTorch checkpoint (zip), not safetensors: convert it with scripts/import_torchvision_vgg.py")
      }
      throw error
    }
    func bad(_ reason: String) -> CaptionError { CaptionError(.badModel, path: path, reason) }
    switch file.metadata["format"] {
    case format?:
      return try loadEncoder(file, path: path)
    case ModelFile.format?:
      let model = try ModelFile.load(path: path)
      return EncoderFile(
        source: .model, layers: model.config.layers, imageSize: model.config.imageSize, mean: model.mean,
        std: model.std,
        convolutions: (0..<model.config.layers.convolutionCount).map {
          (model.tensors["encoder.conv\($0).weight"]!, model.tensors["encoder.conv\($0).bias"]!)
        })
    case let other?:
      throw bad(
        "metadata format is \"\(other.prefix(40))\": neither a caption encoder or model nor a torchvision VGG"
      )
    case nil:
      return try loadTorchvision(file, path: path)
    }
  }

  private static func loadEncoder(_ file: SafetensorsFile, path: String) throws -> EncoderFile {
    func bad(_ reason: String) -> CaptionError { CaptionError(.badModel, path: path, reason) }
    guard file.metadata["version"] == version else {
      throw bad(
        "metadata version \"\((file.metadata["version"] ?? "").prefix(40))\" is not supported (only \(version))"
      )
    }
    guard let layersText = file.metadata["layers"],
      let layers = try? JSONDecoder().decode([EncoderLayer].self, from: Data(layersText.utf8)),
      !layers.isEmpty
    else {
      throw bad("metadata layers is not a layer list such as [64, \"M\", 128]")
    }
    guard let preprocessText = file.metadata["preprocess"],
      let preprocess = try? JSONDecoder().decode(PreprocessMetadata.self, from: Data(preprocessText.utf8))
    else {
      throw bad("metadata preprocess is not {\"image_size\", \"mean\", \"std\"}")
    }
    guard (1...4096).contains(preprocess.image_size) else {
      throw bad("metadata preprocess image_size \(preprocess.image_size) is outside 1...4096")
    }
    guard preprocess.mean.count == 3, preprocess.mean.allSatisfy({ $0.isFinite }),
      preprocess.std.count == 3, preprocess.std.allSatisfy({ $0.isFinite && $0 > 0 })
    else {
      throw bad("metadata preprocess needs 3 finite means and 3 positive deviations")
    }
    let convolutions = try checkedConvolutions(
      layers: layers, name: { "encoder.conv\($0)" }, file: file, path: path)
    let expected = Set(
      (0..<convolutions.count).flatMap { ["encoder.conv\($0).weight", "encoder.conv\($0).bias"] })
    if let extra = (file.tensors.keys.sorted() + file.skipped.sorted()).first(where: {
      !expected.contains($0)
    }) {
      throw bad(
        "tensor \"\(extra.prefix(80))\" is not part of an encoder of layers \(layers.map(\.description))")
    }
    return EncoderFile(
      source: .encoder, layers: layers, imageSize: preprocess.image_size, mean: preprocess.mean,
      std: preprocess.std, convolutions: convolutions)
  }

  /// torchvision's `VGG.features` is a Sequential of Conv2d(3×3, padding 1), ReLU and MaxPool2d(2, 2):
  /// conv at index i, its ReLU at i+1, then the next conv at i+2, or a pool at i+2 and the next conv
  /// at i+3. Every VGG configuration ends with a pool after the last ReLU. With batch norm
  /// (`vgg16_bn`) each conv is followed by BatchNorm2d, which this encoder does not have.
  private static func loadTorchvision(_ file: SafetensorsFile, path: String) throws -> EncoderFile {
    func bad(_ reason: String) -> CaptionError { CaptionError(.badModel, path: path, reason) }
    let names = file.tensors.keys.sorted() + file.skipped.sorted()
    let isNormalisation: (String) -> Bool = {
      $0.hasSuffix(".running_mean") || $0.hasSuffix(".running_var") || $0.hasSuffix(".num_batches_tracked")
    }
    var indices: [Int: (weight: Bool, bias: Bool)] = [:]
    for name in names where name.hasPrefix("features.") && !isNormalisation(name) {
      let parts = name.split(separator: ".", omittingEmptySubsequences: false)
      guard parts.count == 3, let index = Int(parts[1]), index >= 0, index < 100_000,
        parts[2] == "weight" || parts[2] == "bias"
      else {
        throw bad(
          "tensor \"\(name.prefix(80))\" is not a torchvision VGG tensor (features.N.weight or .bias)")
      }
      var entry = indices[index] ?? (false, false)
      if parts[2] == "weight" { entry.weight = true } else { entry.bias = true }
      indices[index] = entry
    }
    guard !indices.isEmpty else {
      let example = names.first.map { " (it holds \"\($0.prefix(60))\")" } ?? ""
      throw bad(
        "not a torchvision VGG: no features.N.weight tensors\(example); ResNet and other networks cannot be read"
      )
    }
    if let normalisation = names.first(where: isNormalisation) {
      throw bad(
        "a network with batch norm (tensor \"\(normalisation.prefix(80))\"): only torchvision's VGG without batch norm (vgg11, vgg13, vgg16, vgg19) can be read"
      )
    }
    let convIndices = indices.keys.sorted()
    if let partial = convIndices.first(where: { !(indices[$0]!.weight && indices[$0]!.bias) }) {
      throw bad("features.\(partial) needs both a weight and a bias")
    }
    guard convIndices[0] == 0 else {
      throw bad("features.0 is not a convolution: not the layout of a torchvision VGG")
    }
    var layers: [EncoderLayer] = []
    for (n, index) in convIndices.enumerated() {
      guard let weight = file.tensors["features.\(index).weight"], weight.shape.count == 4 else {
        throw bad("features.\(index).weight is not a convolution weight [C_out, C_in, kh, kw]")
      }
      layers.append(.conv(weight.shape[0]))
      if n + 1 < convIndices.count {
        switch convIndices[n + 1] - index {
        case 2: break  // conv, ReLU, conv
        case 3: layers.append(.maxPool)  // conv, ReLU, pool, conv
        default:
          throw bad(
            "features.\(index) and features.\(convIndices[n + 1]) are \(convIndices[n + 1] - index) apart: a torchvision VGG has 2 (ReLU) or 3 (ReLU, max-pool) between convolutions"
          )
        }
      }
    }
    layers.append(.maxPool)  // every torchvision VGG configuration ends with a pool
    let convolutions = try checkedConvolutions(
      layers: layers, name: { "features.\(convIndices[$0])" },
      file: file, path: path)
    return EncoderFile(
      source: .torchvision, layers: layers, imageSize: torchvisionImageSize, mean: Preprocess.imagenetMean,
      std: Preprocess.imagenetStd, convolutions: convolutions)
  }

  /// Conv k's weight and bias from `file` under `name(k)`, each shape checked against `layers`
  /// (3 input channels first), every value finite (`SafetensorsFile.nonFinite`, noted as read).
  private static func checkedConvolutions(
    layers: [EncoderLayer], name: (Int) -> String, file: SafetensorsFile, path: String
  ) throws -> [(weight: Tensor, bias: Tensor)] {
    let tensors = file.tensors
    let nonFinite = Set(file.nonFinite)
    func bad(_ reason: String) -> CaptionError { CaptionError(.badModel, path: path, reason) }
    var result: [(weight: Tensor, bias: Tensor)] = []
    var channels = 3
    for case .conv(let out) in layers {
      let k = result.count
      guard let weight = tensors[name(k) + ".weight"], let bias = tensors[name(k) + ".bias"] else {
        throw bad(
          "tensor \"\(name(k)).weight\" or \"\(name(k)).bias\" is missing for layers \(layers.map(\.description))"
        )
      }
      guard weight.shape == [out, channels, 3, 3] else {
        throw bad("tensor \"\(name(k)).weight\" has shape \(weight.shape), expected \([out, channels, 3, 3])")
      }
      guard bias.shape == [out] else {
        throw bad("tensor \"\(name(k)).bias\" has shape \(bias.shape), expected [\(out)]")
      }
      for suffix in ["weight", "bias"] where nonFinite.contains(name(k) + "." + suffix) {
        throw bad("tensor \"\(name(k)).\(suffix)\" holds a value that is not finite (NaN or infinity)")
      }
      result.append((weight, bias))
      channels = out
    }
    return result
  }

  // MARK: - Saving

  /// Writes a `caption` encoder file atomically (SPEC §3a).
  public func save(path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let metadata = [
      "format": EncoderFile.format, "version": EncoderFile.version,
      "layers": String(decoding: try encoder.encode(layers), as: UTF8.self),
      "preprocess": String(
        decoding: try encoder.encode(PreprocessMetadata(image_size: imageSize, mean: mean, std: std)),
        as: UTF8.self),
    ]
    try Safetensors.write(path: path, tensors: namedTensors, metadata: metadata)
  }

  // MARK: - Use

  /// An encoder (pool `avg`, a throwaway `fc`) holding these convolutions, for images of `size` px:
  /// its `features` are the conv feature map.
  public func makeEncoder(imageSize size: Int? = nil) -> Encoder {
    let config = ModelConfig(imageSize: size ?? imageSize, layers: layers, dv: 1, vocabSize: 4, pool: .avg)
    let encoder = Encoder(config: config)
    copyConvolutions(into: encoder)
    return encoder
  }

  /// Sets `encoder`'s convolutions to these (same layer list).
  public func copyConvolutions(into encoder: Encoder) {
    precondition(encoder.convolutions.count == convolutions.count, "EncoderFile: layer lists differ")
    for (conv, loaded) in zip(encoder.convolutions, convolutions) {
      conv.weight.value.copy(from: loaded.weight)
      conv.bias.value.copy(from: loaded.bias)
    }
  }

  /// The torchvision configuration these layers are (`vgg16`), if any.
  public var torchvisionName: String? {
    EncoderFile.torchvisionConfigurations.first { $0.value == layers }?.key
  }
}

extension Array where Element == EncoderLayer {
  /// How many conv layers the list holds.
  public var convolutionCount: Int {
    reduce(0) { count, layer in if case .conv = layer { return count + 1 } else { return count } }
  }
}
