import Dispatch
import FoundationEssentials
import Glibc

/// Times `caption score`'s work on synthetic seeded captions: PTB tokenisation of every caption, then
/// BLEU, ROUGE-L and CIDEr-D. Prints `key=value` lines, the last one `score_<N>x<R>_s=<seconds>`.
public enum MetricsBenchmark {
  public static func run(log: (String) -> Void) {
    run(images: 5000, references: 5, log: log)
  }

  public static func run(images: Int, references: Int, seed: UInt64 = 1, log: (String) -> Void) {
    var generator = SeededGenerator(seed: seed)
    var candidateTexts: [Int: String] = [:]
    var referenceTexts: [Int: [String]] = [:]
    for id in 0..<images {
      candidateTexts[id] = sentence(&generator)
      referenceTexts[id] = (0..<references).map { _ in sentence(&generator) }
    }
    let start = DispatchTime.now().uptimeNanoseconds
    var candidates: [Int: [String]] = [:]
    var referenceTokens: [Int: [[String]]] = [:]
    for id in 0..<images {
      candidates[id] = PTBTokenizer.tokenize(candidateTexts[id]!)
      referenceTokens[id] = referenceTexts[id]!.map(PTBTokenizer.tokenize)
    }
    let tokenized = DispatchTime.now().uptimeNanoseconds
    let scores = CaptionMetrics.score(candidates: candidates, references: referenceTokens)
    let end = DispatchTime.now().uptimeNanoseconds
    let captions = images * (references + 1)
    log("captions=\(captions)")
    log("tokenize_s=\(String(cFormat: "%.4f", Double(tokenized - start) / 1e9))")
    log("metrics_s=\(String(cFormat: "%.4f", Double(end - tokenized) / 1e9))")
    log("CIDEr-D=\(String(cFormat: "%.4f", scores.ciderD)) BLEU-4=\(String(cFormat: "%.4f", scores.bleu[3]))")
    log("score_\(images)x\(references)_s=\(String(cFormat: "%.4f", Double(end - start) / 1e9))")
  }

  static let subjects = [
    "A man", "a woman", "Two dogs", "a cat", "A child", "a group of people", "An elephant", "a giraffe",
    "The surfer", "a skier", "Three sheep", "a young boy's dog",
  ]
  static let verbs = [
    "is standing", "sitting", "running", "walks", "playing", "lying", "eating", "jumps", "riding",
    "looking",
  ]
  static let places = [
    "on a table", "in the grass", "near a bench", "at the beach", "in a field", "in the snow",
    "down a street", "under a tree", "by the water", "on a couch", "next to a fence", "on top of a car",
  ]
  static let extras = [
    "", "", ", looking happy", " with a red frisbee", " at 3 p.m.", " (near the U.S. border)",
    " while it's raining", " and smiling", "; it isn't moving",
  ]
  static let endings = [".", ".", "", "!", " ."]

  static func sentence(_ generator: inout SeededGenerator) -> String {
    func pick(_ words: [String]) -> String { words[Int(generator.next() % UInt64(words.count))] }
    return pick(subjects) + " " + pick(verbs) + " " + pick(places) + pick(extras) + pick(endings)
  }
}
