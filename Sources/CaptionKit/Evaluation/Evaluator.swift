import FoundationEssentials
import Glibc

/// One image of an evaluated split: what the model said and how it scored.
public struct EvaluatedImage: Sendable {
  public var image: DatasetImage
  public var tokens: [String]
  public var logprob: Double
  public var ciderD: Double
  /// Indices into `tokens` that the scene contradicts (grounded evaluation), for the report.
  public var wrongWords: Set<Int>
}

/// The result of `caption evaluate`.
public struct EvaluationResult: Sendable {
  public var scores: CaptionScores
  public var grounded: GroundedScores?
  public var images: [EvaluatedImage]
  public var skipped: [(path: String, reason: String)]

  /// SPEC §2's `--json` object: the six COCO keys, plus the grounded fractions where scenes exist.
  public func jsonObject() -> [String: Double] {
    var object = scores.jsonObject()
    if let grounded {
      object["object-F1"] = grounded.objectF1
      object["attribute-accuracy"] = grounded.attributeAccuracy
      object["count-accuracy"] = grounded.countAccuracy
      object["relation-accuracy"] = grounded.relationAccuracy
    }
    return object
  }
}

/// Captions a split with a model and scores it against its references (and scenes).
public enum Evaluator {
  public static func run(
    captioner: Captioner, images: [DatasetImage], options: DecodingOptions, scenes: [Int: Scene]?,
    batchSize: Int = 32, progress: ((Int, Int) -> Void)? = nil
  ) -> EvaluationResult {
    var captions: [Int: (tokens: [String], logprob: Double)] = [:]
    var kept: [DatasetImage] = []
    var skipped: [(String, String)] = []
    var start = 0
    while start < images.count {
      let chunk = Array(images[start..<min(images.count, start + batchSize)])
      var chunkOptions = options
      chunkOptions.streamOffset = options.streamOffset &+ start  // sampling: as one batch
      let results = captioner.caption(
        paths: chunk.map(\.path), options: chunkOptions, batchSize: batchSize)
      for (image, result) in zip(chunk, results) {
        switch result {
        case .success(let caption):
          captions[image.id] = (captioner.words(caption), caption.logprob)
          kept.append(image)
        case .failure(let error):
          skipped.append((image.path, error.reason))
        }
      }
      start += chunk.count
      progress?(start, images.count)
    }
    var references: [Int: [[String]]] = [:]
    for image in kept { references[image.id] = image.captions.map { PTBTokenizer.tokenize($0) } }
    let candidates = captions.mapValues(\.tokens)
    let scores = CaptionMetrics.score(candidates: candidates, references: references)
    var grounded: GroundedScores? = nil
    if let scenes {
      // One tokenised caption per image with a scene.
      grounded = GroundedEvaluation.score(
        captions: candidates.filter { scenes[$0.key] != nil }, scenes: scenes)
    }
    let evaluated = kept.map { image in
      let tokens = captions[image.id]!.tokens
      let wrong = scenes?[image.id].map { GroundedEvaluation.wrongWords(tokens: tokens, scene: $0) } ?? []
      return EvaluatedImage(
        image: image, tokens: tokens, logprob: captions[image.id]!.logprob,
        ciderD: scores.perImageCIDEr[image.id] ?? 0, wrongWords: wrong)
    }
    return EvaluationResult(scores: scores, grounded: grounded, images: evaluated, skipped: skipped)
  }
}
