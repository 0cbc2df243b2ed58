extension RerankCalibration {
  /// Chooses λ for `captioner`'s model (which must have the retrieval part) on dataset images with
  /// their references: the images are loaded and encoded `batchSize` at a time (unreadable ones
  /// skipped and counted), then `calibrate` runs on their vectors. Nil when no image could be read.
  public static func calibrate(
    captioner: Captioner, images: [DatasetImage], maxLength: Int = 20,
    candidateCount: Int = Reranker.calibrationCandidates, batchSize: Int = 32,
    progress: ((_ done: Int, _ total: Int) -> Void)? = nil
  ) -> (calibration: RerankCalibration?, skipped: Int) {
    guard let retrieval = captioner.model.retrieval else { preconditionFailure("no retrieval part") }
    var vectors: [Float] = []  // [n, Dv] row by row
    var ids: [Int] = []
    var references: [Int: [[String]]] = [:]
    let errors = captioner.encode(paths: images.map(\.path), batchSize: batchSize) { indices, v in
      vectors += v.array
      for image in indices.map({ images[$0] }) {
        ids.append(image.id)
        references[image.id] = image.captions.map { PTBTokenizer.tokenize($0) }
      }
      progress?(indices.last! + 1, images.count)
    }
    let skipped = errors.count(where: { $0 != nil })
    guard !ids.isEmpty else { return (nil, skipped) }
    let calibration = calibrate(
      model: captioner.model, retrieval: retrieval,
      imageVectors: Tensor(shape: [ids.count, vectors.count / ids.count], values: vectors), imageIds: ids,
      references: references, vocabulary: captioner.vocabulary, maxLength: maxLength,
      candidateCount: candidateCount, batchSize: batchSize)
    return (calibration, skipped)
  }
}
