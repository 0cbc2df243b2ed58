/// ROUGE-L as the COCO caption evaluation computes it (pycocoevalcap 1.2, `rouge.py`): from the longest
/// common subsequence (LCS) of the candidate with each reference,
///   P = max_r LCS/|c|,  R = max_r LCS/|r|   (each maximised on its own),
///   ROUGE-L = (1 + β²) P R / (R + β² P),  β = 1.2;  0 when P or R is 0.
/// Captions are split on single spaces there, so an empty caption is one empty word: callers pass
/// word ids where an empty caption is `[emptyWord]`.
final class ROUGEL {
  static let beta = 1.2
  private var row: [Int32] = []

  func score(candidate: [Int32], references: [[Int32]]) -> Double {
    var bestPrecision = 0.0
    var bestRecall = 0.0
    for reference in references {
      let lcs = Double(longestCommonSubsequence(candidate, reference))
      bestPrecision = max(bestPrecision, lcs / Double(candidate.count))
      bestRecall = max(bestRecall, lcs / Double(reference.count))
    }
    guard bestPrecision != 0 && bestRecall != 0 else { return 0 }
    let beta2 = ROUGEL.beta * ROUGEL.beta
    return (1 + beta2) * bestPrecision * bestRecall / (bestRecall + beta2 * bestPrecision)
  }

  /// LCS length by the usual dynamic programme, one row of `b.count + 1` entries reused.
  func longestCommonSubsequence(_ a: [Int32], _ b: [Int32]) -> Int {
    guard !a.isEmpty && !b.isEmpty else { return 0 }
    if row.count < b.count + 1 { row = [Int32](repeating: 0, count: b.count + 1) }
    for j in 0...b.count { row[j] = 0 }
    return row.withUnsafeMutableBufferPointer { row in
      for i in 0..<a.count {
        var diagonal: Int32 = 0  // L[i-1][j-1]
        let word = a[i]
        for j in 1...b.count {
          let above = row[j]  // L[i-1][j]
          // L[i][j] = L[i-1][j-1] + 1 on a match, else max(L[i-1][j], L[i][j-1])
          row[j] = word == b[j - 1] ? diagonal + 1 : max(above, row[j - 1])
          diagonal = above
        }
      }
      return Int(row[b.count])
    }
  }
}
