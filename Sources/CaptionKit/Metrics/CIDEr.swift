import FoundationEssentials
import Glibc

/// CIDEr-D as the COCO caption evaluation computes it (pycocoevalcap 1.2, `cider_scorer.py`).
///
/// Each caption becomes, per n = 1…4, a TF-IDF vector  g_k = count_k · (ln N − ln max(1, df_k)),
/// N the number of evaluated images and df_k the number of them whose references hold n-gram k.
/// Per reference and n:  sim_n = Σ_k min(g_c,k, g_r,k) · g_r,k / (‖g_c‖ ‖g_r‖) · exp(−δ²/(2σ²)), σ = 6
/// (the division skipped when a norm is 0), where δ is the difference of the two captions' numbers
/// of bigrams, which is what that code measures as "length". Image score = 10 · mean over n of the mean
/// over references; the corpus score is the mean over images.
struct CIDErD {
  static let sigma = 6.0

  /// One caption as weights per n-gram (aligned with its `NGramCounts`), norms per n, bigram count.
  struct Vector {
    var weights: [Double]
    var norms: [Double]
    var bigrams: Int
  }

  let logImageCount: Double
  /// ln max(1, df) per interned n-gram id.
  let logDocumentFrequency: [Double]

  /// Document frequencies from the references of the evaluated images only.
  init(referencesPerImage: [[NGramCounts]], ngramCount: Int) {
    var documentFrequency = [Int32](repeating: 0, count: ngramCount)
    var lastImage = [Int32](repeating: -1, count: ngramCount)
    for (image, references) in referencesPerImage.enumerated() {
      for reference in references {
        for id in reference.ids where lastImage[Int(id)] != Int32(image) {
          lastImage[Int(id)] = Int32(image)
          documentFrequency[Int(id)] += 1
        }
      }
    }
    logImageCount = log(Double(referencesPerImage.count))
    logDocumentFrequency = documentFrequency.map { log(max(1.0, Double($0))) }
  }

  func vector(_ counts: NGramCounts) -> Vector {
    var weights = [Double](repeating: 0, count: counts.ids.count)
    var squares = [Double](repeating: 0, count: 4)
    var bigrams = 0
    for i in 0..<counts.ids.count {
      let id = Int(counts.ids[i])
      // An n-gram no reference holds has df 0, so ln max(1, 0) = 0.
      let logDF = id < logDocumentFrequency.count ? logDocumentFrequency[id] : 0
      let weight = Double(counts.counts[i]) * (logImageCount - logDF)
      weights[i] = weight
      let n = Int(counts.order[i]) - 1
      squares[n] += weight * weight
      if n == 1 { bigrams += Int(counts.counts[i]) }
    }
    return Vector(weights: weights, norms: squares.map { $0.squareRoot() }, bigrams: bigrams)
  }

  /// The image's CIDEr-D (already × 10).
  func score(candidate: NGramCounts, references: [NGramCounts]) -> Double {
    let c = vector(candidate)
    var total = [Double](repeating: 0, count: 4)
    for reference in references {
      let r = vector(reference)
      var dot = [Double](repeating: 0, count: 4)
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
          // clipped: min(g_c, g_r) · g_r
          dot[Int(candidate.order[i]) - 1] += min(c.weights[i], r.weights[j]) * r.weights[j]
          i += 1
          j += 1
        }
      }
      let delta = Double(c.bigrams - r.bigrams)
      let penalty = exp(-(delta * delta) / (2 * CIDErD.sigma * CIDErD.sigma))
      for n in 0..<4 {
        var value = dot[n]
        if c.norms[n] != 0 && r.norms[n] != 0 { value /= c.norms[n] * r.norms[n] }
        total[n] += value * penalty
      }
    }
    guard !references.isEmpty else { return 0 }
    let meanOverN = (total[0] + total[1] + total[2] + total[3]) / 4
    return meanOverN / Double(references.count) * 10
  }
}
