import FoundationEssentials
import Glibc

/// A loaded model ready to caption image files in batches: what `describe` and `evaluate` use.
public final class Captioner {
  public let model: CaptionModel
  public let modelFile: ModelFile
  public var vocabulary: Vocabulary { modelFile.vocabulary }
  public let decoder: ImageDecoder
  /// The reranker of a model with a retrieval part (SPEC §3b), for options with `rerank`.
  public var reranker: Reranker? { model.retrieval.map(Reranker.init) }

  public init(modelPath: String, decoder: ImageDecoder = ImageDecoder()) throws {
    modelFile = try ModelFile.load(path: modelPath)
    model = CaptionModel(config: modelFile.config)
    try model.adopt(tensors: modelFile.tensors, path: modelPath)
    model.fixWeights()  // this model is never trained
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
      paths: paths, batchSize: batchSize, model: model, options: options, reranker: reranker,
      load: { try load(path: $0) }, encode: { encode($0) }, each: { results.append($1) })
    return results
  }

  /// Captions of preprocessed images, each with its own options (a server's requests gathered into
  /// one batch): one encoder pass for all images, then one decode per distinct set of options, so
  /// that greedy and beam rows of several requests run in the same steps. Image i's caption is the
  /// one it gets alone with `options[i]`: sampling draws it from stream `options[i].streamOffset`.
  /// Options with `rerank` need a model with a retrieval part and a `rerankWeight`
  /// (`Reranker.weight(given:config:path:)` resolves it).
  public func caption(images: [RGBImage], options: [DecodingOptions]) -> [DecodedCaption] {
    caption(images: images, options: options, familiarity: nil).captions
  }

  /// `caption(images:options:)`, and each image's familiarity verdict (SPEC §3c) from the same
  /// encoder pass: nil when `familiarity` is nil (the model has no calibration).
  public func caption(images: [RGBImage], options: [DecodingOptions], familiarity: Familiarity?) -> (
    captions: [DecodedCaption], familiar: [Bool]?
  ) {
    precondition(images.count == options.count, "one set of options per image")
    guard !images.isEmpty else { return ([], familiarity.map { _ in [] }) }
    let vectors = encode(images)  // [n, dv]
    let familiar = familiarity?.verdicts(imageVectors: vectors, encoder: model.encoder)
    let dv = vectors.shape[1]
    var groups: [(options: DecodingOptions, images: [Int])] = []
    for (image, imageOptions) in options.enumerated() {
      var key = imageOptions
      key.streamOffset = 0
      key.imageStreams = nil
      if let group = groups.firstIndex(where: { $0.options == key }) {
        groups[group].images.append(image)
      } else {
        groups.append((key, [image]))
      }
    }
    var captions = CaptionDecoder.emptyCaptions(images.count)
    for group in groups {
      var groupOptions = group.options
      groupOptions.imageStreams = group.images.map { options[$0].streamOffset }
      var groupVectors = vectors
      if group.images.count < images.count {
        groupVectors = Tensor(zeros: [group.images.count, dv])  // [g, dv]: the group's rows
        for (row, image) in group.images.enumerated() {
          (groupVectors.pointer + row * dv).update(from: vectors.pointer + image * dv, count: dv)
        }
      }
      let decoded = DescribeRun.decode(
        model: model, imageVectors: groupVectors, options: groupOptions, reranker: reranker)
      for (caption, image) in zip(decoded, group.images) { captions[image] = caption }
    }
    return (captions, familiar)
  }

  /// Loads and encodes image files `batchSize` at a time. For each batch of the files that could be
  /// read, `each` gets their indices in `paths` and their image vectors v [n, Dv] (a workspace; the
  /// encoder's `blockMeans` are that pass's too). Returns, per path, nil or why it could not be read.
  public func encode(
    paths: [String], batchSize: Int, each: (_ indices: [Int], _ imageVectors: Tensor) -> Void
  ) -> [CaptionError?] {
    var errors = [CaptionError?](repeating: nil, count: paths.count)
    let batchSize = max(batchSize, 1)
    for start in stride(from: 0, to: paths.count, by: batchSize) {
      var loaded: [RGBImage] = []
      var indices: [Int] = []
      for i in start..<min(start + batchSize, paths.count) {
        do {
          loaded.append(try load(path: paths[i]))
          indices.append(i)
        } catch {
          errors[i] = error as? CaptionError ?? CaptionError(.unreadable, path: paths[i], "\(error)")
        }
      }
      if !loaded.isEmpty { each(indices, encode(loaded)) }
    }
    return errors
  }

  /// An image file as the network sees it (SPEC §4), before normalisation.
  public func load(path: String) throws -> RGBImage {
    try Preprocess.load(path: path, size: modelFile.config.imageSize, decoder: decoder)
  }

  /// An image held in memory (an upload) as the network sees it; `name` only names it in errors.
  public func load(bytes: [UInt8], name: String) throws -> RGBImage {
    try Preprocess.load(bytes: bytes, path: name, size: modelFile.config.imageSize, decoder: decoder)
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
