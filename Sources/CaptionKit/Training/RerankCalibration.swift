/// The choice of λ (SPEC §3b): the weight of `Reranker.calibrationWeights` whose reranked captions
/// score the highest CIDEr-D against the references (the smallest on ties).
public struct RerankCalibration: Equatable, Sendable {
  public var weight: Double
  /// CIDEr-D of the reranked captions for each weight tried, in order.
  public var scores: [(weight: Double, ciderD: Double)]
  /// The images the choice was made on.
  public var images: Int

  public static func == (a: RerankCalibration, b: RerankCalibration) -> Bool {
    a.weight == b.weight && a.images == b.images && a.scores.map(\.weight) == b.scores.map(\.weight)
      && a.scores.map(\.ciderD) == b.scores.map(\.ciderD)
  }

  /// `candidates[i]` and `cosines[i]` are those of image `imageIds[i]`, whose tokenised references
  /// `references` hold.
  public static func choose(
    candidates: [[DecodedCaption]], cosines: [[Double]], imageIds: [Int], references: [Int: [[String]]],
    vocabulary: Vocabulary, weights: [Double] = Reranker.calibrationWeights
  ) -> RerankCalibration {
    var scores: [(weight: Double, ciderD: Double)] = []
    let scored = Set(imageIds)
    let references = references.filter { scored.contains($0.key) }  // document frequencies: these images'
    for weight in weights {
      var chosen: [Int: [String]] = [:]
      for (i, id) in imageIds.enumerated() {
        chosen[id] = Reranker.choose(candidates[i], cosines: cosines[i], weight: weight).words(vocabulary)
      }
      let ciderD = CaptionMetrics.score(candidates: chosen, references: references).ciderD
      scores.append((weight, ciderD))
    }
    var best = 0
    for i in scores.indices where scores[i].ciderD > scores[best].ciderD { best = i }
    return RerankCalibration(weight: scores[best].weight, scores: scores, images: imageIds.count)
  }

  /// Decodes `candidateCount` beam candidates for each image vector (`imageVectors` [n, Dv], image
  /// i being `imageIds[i]`), `batchSize` images at a time, and chooses λ on them.
  public static func calibrate<M: StepModel>(
    model: M, retrieval: RetrievalModel, imageVectors: Tensor, imageIds: [Int],
    references: [Int: [[String]]], vocabulary: Vocabulary, maxLength: Int,
    candidateCount: Int = Reranker.calibrationCandidates, batchSize: Int = 32
  ) -> RerankCalibration {
    let dv = imageVectors.shape[1]
    let reranker = Reranker(retrieval: retrieval)
    let options = DecodingOptions(maxLength: maxLength, beamSize: candidateCount)
    var candidates: [[DecodedCaption]] = []
    var cosines: [[Double]] = []
    for start in stride(from: 0, to: imageIds.count, by: batchSize) {
      let count = min(batchSize, imageIds.count - start)
      let batch = Tensor(
        shape: [count, dv], values: Array(imageVectors.buffer[start * dv..<(start + count) * dv]))
      let decoded = CaptionDecoder.beamCandidates(model: model, imageVectors: batch, options: options)
      candidates += decoded
      cosines += reranker.cosines(imageVectors: batch, candidates: decoded)
    }
    return choose(
      candidates: candidates, cosines: cosines, imageIds: imageIds, references: references,
      vocabulary: vocabulary)
  }

  /// Puts λ into `file`'s config as `retrieval.rerank_weight`, nothing else changed.
  public func store(in file: inout ModelFile) {
    precondition(file.config.retrieval != nil, "a model without the retrieval part has no λ")
    file.config.retrieval?.rerankWeight = Float(weight)
  }
}
