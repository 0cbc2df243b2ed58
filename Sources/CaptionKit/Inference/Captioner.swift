import Foundation

/// A loaded model ready to caption image files in batches: what `describe` and `evaluate` use.
public final class Captioner {
  public let model: CaptionModel
  public let modelFile: ModelFile
  public var vocabulary: Vocabulary { modelFile.vocabulary }
  public let decoder: ImageDecoder

  public init(modelPath: String, decoder: ImageDecoder = ImageDecoder()) throws {
    modelFile = try ModelFile.load(path: modelPath)
    model = CaptionModel(config: modelFile.config)
    try model.adopt(tensors: modelFile.tensors, path: modelPath)
    self.decoder = decoder
  }

  public init(model: CaptionModel, modelFile: ModelFile, decoder: ImageDecoder = ImageDecoder()) {
    self.model = model
    self.modelFile = modelFile
    self.decoder = decoder
  }

  /// Captions of the images at `paths`, in order; a file that cannot be read gives its error.
  /// Images are decoded, then encoded and decoded `batchSize` at a time.
  public func caption(paths: [String], options: DecodingOptions, batchSize: Int = 16)
    -> [Result<DecodedCaption, CaptionError>]
  {
    var results: [Result<DecodedCaption, CaptionError>] = []
    results.reserveCapacity(paths.count)
    DescribeRun.caption(
      paths: paths, batchSize: batchSize, model: model, options: options,
      load: { try load(path: $0) }, encode: { encode($0) }, each: { results.append($1) })
    return results
  }

  /// An image file as the network sees it (SPEC §4), before normalisation.
  public func load(path: String) throws -> RGBImage {
    try Preprocess.load(path: path, size: modelFile.config.imageSize, decoder: decoder)
  }

  /// The image vectors `v` ([n, Dv]) of preprocessed images (at least one, all of the model's size).
  public func encode(_ images: [RGBImage]) -> Tensor {
    model.encode(Preprocess.batch(images, mean: modelFile.mean, std: modelFile.std))
  }

  /// The words of a decoded caption.
  public func words(_ caption: DecodedCaption) -> [String] {
    caption.words(vocabulary)
  }
}
