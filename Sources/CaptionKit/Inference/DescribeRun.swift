/// The body of `caption describe` without the command line: images in batches through the encoder
/// and the decoder, one output line per image in the order given, failures counted (SPEC §2).
public enum DescribeRun {
  /// Captions `paths` in batches of at most `batchSize` images: each image is loaded alone (`load`;
  /// a failure is that image's error), the batch's loaded images are encoded together (`encode`,
  /// giving `[n, dv]`) and decoded together (`CaptionDecoder.decode`). For every path, in order,
  /// `write` receives its lines (`DescribeOutput.lines`). Returns the number of images that failed
  /// (the command exits 1 when it is not 0). A non-`CaptionError` thrown is reported as unreadable.
  /// With `reportsFamiliar`, each caption carries its image's verdict (SPEC §3c): `familiar` gives
  /// the verdicts of the images just encoded from their image vectors (`Familiarity.verdicts(
  /// imageVectors:encoder:)`); nil, the model has no calibration, gives `.unknown` for every image.
  public static func run<M: StepModel, Image>(
    paths: [String], batchSize: Int = 16, model: M, vocabulary: Vocabulary,
    options: DecodingOptions, json: Bool, bare: Bool,
    reportsFamiliar: Bool = false, familiar: ((_ imageVectors: Tensor) -> [Bool])? = nil,
    reranker: Reranker? = nil,
    load: (_ path: String) throws -> Image,
    encode: (_ images: [Image]) throws -> Tensor,
    write: (_ stdout: String?, _ stderr: String?) -> Void
  ) -> Int {
    var failures = 0
    // The verdicts of the encoded images not yet written: a batch's captions come back in the
    // order of its encoded images, so each success takes the first.
    var pendingVerdicts: [Bool] = []
    pendingVerdicts.reserveCapacity(batchSize)
    caption(
      paths: paths, batchSize: batchSize, model: model, options: options, reranker: reranker, load: load,
      encode: { images in
        let vectors = try encode(images)  // [n, dv]
        if let familiar { pendingVerdicts += familiar(vectors) }
        return vectors
      }
    ) { path, result in
      let outcome = result.map { (words: $0.words(vocabulary), logprob: $0.logprob) }
      if case .failure = outcome { failures += 1 }
      var verdict: FamiliarVerdict? = nil
      if reportsFamiliar, case .success = outcome {
        verdict = FamiliarVerdict(pendingVerdicts.isEmpty ? nil : pendingVerdicts.removeFirst())
      }
      let lines = DescribeOutput.lines(
        path: path, outcome: outcome, json: json, bare: bare, familiar: verdict,
        rerank: try? result.get().rerank)
      write(lines.stdout, lines.stderr)
    }
    return failures
  }

  /// The batching under `run` (and `Captioner`, which `evaluate` uses): `each` receives every path,
  /// in order, with its caption or its error, one batch at a time. With `options.rerank`, the
  /// captions are `reranker`'s (which must then be given).
  public static func caption<M: StepModel, Image>(
    paths: [String], batchSize: Int, model: M, options: DecodingOptions, reranker: Reranker? = nil,
    load: (_ path: String) throws -> Image,
    encode: (_ images: [Image]) throws -> Tensor,
    each: (_ path: String, _ result: Result<DecodedCaption, CaptionError>) -> Void
  ) {
    func asCaptionError(_ error: Error, _ path: String) -> CaptionError {
      error as? CaptionError ?? CaptionError(.unreadable, path: path, "\(error)")
    }
    var batchStart = 0
    while batchStart < paths.count {
      let batch = Array(paths[batchStart..<min(batchStart + max(batchSize, 1), paths.count)])
      var results = [Result<DecodedCaption, CaptionError>?](repeating: nil, count: batch.count)
      var images: [Image] = []
      var imageSlots: [Int] = []  // the batch position of each loaded image
      for (slot, path) in batch.enumerated() {
        do {
          images.append(try load(path))
          imageSlots.append(slot)
        } catch {
          results[slot] = .failure(asCaptionError(error, path))
        }
      }
      if !images.isEmpty {
        do {
          let vectors = try encode(images)  // [n, dv]
          var batchOptions = options
          batchOptions.streamOffset = options.streamOffset &+ batchStart  // sampling: same as one batch
          let captions = decode(
            model: model, imageVectors: vectors, options: batchOptions, reranker: reranker)
          for (caption, slot) in zip(captions, imageSlots) { results[slot] = .success(caption) }
        } catch {
          for slot in imageSlots { results[slot] = .failure(asCaptionError(error, batch[slot])) }
        }
      }
      for (slot, path) in batch.enumerated() {
        each(
          path,
          results[slot]
            ?? .failure(CaptionError(.corrupt, path: path, "the encoder gave no vector for this image")))
      }
      batchStart += batch.count
    }
  }

  /// `CaptionDecoder.decode`, or with `options.rerank` the reranker's choice among beam candidates.
  public static func decode<M: StepModel>(
    model: M, imageVectors: Tensor, options: DecodingOptions, reranker: Reranker?
  ) -> [DecodedCaption] {
    guard options.rerank > 0 else {
      return CaptionDecoder.decode(model: model, imageVectors: imageVectors, options: options)
    }
    guard let reranker else { preconditionFailure("options.rerank needs a reranker") }
    return reranker.decode(model: model, imageVectors: imageVectors, options: options)
  }
}
