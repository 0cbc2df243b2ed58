import FoundationEssentials
import Glibc

/// BLEU-1…4 as the COCO caption evaluation computes it (pycocoevalcap 1.2, `bleu_scorer.py`):
/// corpus-level, modified n-gram precision with each candidate n-gram count clipped by its largest
/// count in any single reference, and the effective reference length "closest" (ties to the shorter).
///
///   BLEU-n = BP · ∏_{k≤n} ((C_k + 1e-15) / (G_k + 1e-9))^{1/n},  BP = exp(1 − 1/ρ) when ρ < 1,
///   ρ = (T + 1e-15) / (R + 1e-9)
/// with C_k the clipped matches, G_k the candidate k-grams, T the candidate words and R the effective
/// reference words, all summed over images (per image for the per-image scores).
struct BLEUAccumulator {
  static let tiny = 1e-15
  static let small = 1e-9

  var testLength = 0
  var referenceLength = 0
  var guesses = [Int](repeating: 0, count: 4)
  var matches = [Int](repeating: 0, count: 4)
  private var maxCounts: [Int32] = []

  /// Adds one image and returns its own BLEU-1…4.
  mutating func add(candidate: NGramCounts, references: [NGramCounts]) -> [Double] {
    // Largest count of each candidate n-gram in any single reference (merge of sorted lists).
    if maxCounts.count < candidate.ids.count { maxCounts = [Int32](repeating: 0, count: candidate.ids.count) }
    for i in 0..<candidate.ids.count { maxCounts[i] = 0 }
    for reference in references {
      var i = 0
      var j = 0
      while i < candidate.ids.count && j < reference.ids.count {
        let a = candidate.ids[i]
        let b = reference.ids[j]
        if a < b {
          i += 1
        } else if b < a {
          j += 1
        } else {
          maxCounts[i] = max(maxCounts[i], reference.counts[j])
          i += 1
          j += 1
        }
      }
    }
    var imageMatches = [Int](repeating: 0, count: 4)
    for i in 0..<candidate.ids.count {
      imageMatches[Int(candidate.order[i]) - 1] += Int(min(candidate.counts[i], maxCounts[i]))
    }
    let length = candidate.length
    let imageGuesses = (1...4).map { max(0, length - $0 + 1) }
    // "closest" reference length; ties go to the shorter one.
    var closest = Int.max
    for reference in references {
      let r = reference.length
      if closest == Int.max || abs(r - length) < abs(closest - length)
        || (abs(r - length) == abs(closest - length) && r < closest)
      {
        closest = r
      }
    }
    if closest == Int.max { closest = 0 }
    testLength += length
    referenceLength += closest
    for k in 0..<4 {
      guesses[k] += imageGuesses[k]
      matches[k] += imageMatches[k]
    }
    return BLEUAccumulator.bleu(
      matches: imageMatches, guesses: imageGuesses, testLength: length, referenceLength: closest)
  }

  /// The corpus BLEU-1…4 of everything added.
  var scores: [Double] {
    BLEUAccumulator.bleu(
      matches: matches, guesses: guesses, testLength: testLength, referenceLength: referenceLength)
  }

  static func bleu(matches: [Int], guesses: [Int], testLength: Int, referenceLength: Int) -> [Double] {
    var product = 1.0
    var result: [Double] = []
    for k in 0..<4 {
      product *= (Double(matches[k]) + tiny) / (Double(guesses[k]) + small)
      result.append(pow(product, 1.0 / Double(k + 1)))
    }
    let ratio = (Double(testLength) + tiny) / (Double(referenceLength) + small)
    if ratio < 1 {
      let brevity = exp(1 - 1 / ratio)
      for k in 0..<4 { result[k] *= brevity }
    }
    return result
  }
}
