/// The COCO caption metrics of one evaluated set, on the scale of pycocoevalcap 1.2 (fractions;
/// CIDEr-D as it returns it, i.e. ×10 included).
public struct CaptionScores: Equatable, Sendable {
  /// Corpus BLEU-1, BLEU-2, BLEU-3, BLEU-4.
  public var bleu: [Double]
  /// Mean ROUGE-L over images.
  public var rougeL: Double
  /// Mean CIDEr-D over images.
  public var ciderD: Double
  /// Number of images scored.
  public var imageCount: Int
  /// Per image (by image id): CIDEr-D, ROUGE-L, and BLEU-1…4 of that image alone.
  public var perImageCIDEr: [Int: Double]
  public var perImageROUGE: [Int: Double]
  public var perImageBLEU: [Int: [Double]]

  /// The six numbers under the keys of `caption score --json` (SPEC §2).
  public func jsonObject() -> [String: Double] {
    [
      "BLEU-1": bleu[0], "BLEU-2": bleu[1], "BLEU-3": bleu[2], "BLEU-4": bleu[3],
      "ROUGE-L": rougeL, "CIDEr-D": ciderD,
    ]
  }

  /// The keys of `jsonObject()` in their display order.
  public static let keys = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"]
}

/// BLEU-1…4, ROUGE-L and CIDEr-D exactly as the COCO caption evaluation (pycocoevalcap 1.2) computes
/// them, on captions already tokenised by `PTBTokenizer.tokenize`.
public enum CaptionMetrics {
  /// Scores `candidates` (image id → the candidate's tokens) against `references` (image id → the
  /// tokens of each reference caption). Only images that have a candidate are scored, and CIDEr-D's
  /// document frequencies come from their references alone (as the COCO code does when its image ids
  /// are those of the results). A candidate whose image has no references is left out.
  public static func score(candidates: [Int: [String]], references: [Int: [[String]]]) -> CaptionScores {
    score(candidates: candidates, references: references, table: NGramTable())
  }

  /// `score`, interning into `table` (tests count its work).
  static func score(candidates: [Int: [String]], references: [Int: [[String]]], table: NGramTable)
    -> CaptionScores
  {
    let imageIDs = candidates.keys.filter { !(references[$0] ?? []).isEmpty }.sorted()
    // ROUGE-L splits the space-joined caption on " ": an empty caption is one empty word.
    let emptyWord = table.wordID("")
    func rougeWords(_ tokens: [String]) -> [Int32] { tokens.isEmpty ? [emptyWord] : table.words(tokens) }
    // BLEU and CIDEr split on any whitespace (Python's str.split()).
    func ngrams(_ tokens: [String]) -> NGramCounts {
      table.counts(table.words(pythonWhitespaceSplit(tokens)))
    }

    var candidateNGrams: [NGramCounts] = []
    var referenceNGrams: [[NGramCounts]] = []
    candidateNGrams.reserveCapacity(imageIDs.count)
    referenceNGrams.reserveCapacity(imageIDs.count)
    for id in imageIDs {
      candidateNGrams.append(ngrams(candidates[id]!))
      referenceNGrams.append(references[id]!.map(ngrams))
    }

    var bleu = BLEUAccumulator()
    let rouge = ROUGEL()
    let cider = CIDErD(referencesPerImage: referenceNGrams, ngramCount: table.ngramCount)
    var scores = CaptionScores(
      bleu: [0, 0, 0, 0], rougeL: 0, ciderD: 0, imageCount: imageIDs.count, perImageCIDEr: [:],
      perImageROUGE: [:], perImageBLEU: [:])
    scores.perImageCIDEr.reserveCapacity(imageIDs.count)
    var rougeSum = 0.0
    var ciderSum = 0.0
    for (index, id) in imageIDs.enumerated() {
      scores.perImageBLEU[id] = bleu.add(
        candidate: candidateNGrams[index], references: referenceNGrams[index])
      let rougeL = rouge.score(
        candidate: rougeWords(candidates[id]!), references: references[id]!.map(rougeWords))
      scores.perImageROUGE[id] = rougeL
      rougeSum += rougeL
      let ciderD = cider.score(candidate: candidateNGrams[index], references: referenceNGrams[index])
      scores.perImageCIDEr[id] = ciderD
      ciderSum += ciderD
    }
    guard !imageIDs.isEmpty else { return scores }
    scores.bleu = bleu.scores
    scores.rougeL = rougeSum / Double(imageIDs.count)
    scores.ciderD = ciderSum / Double(imageIDs.count)
    return scores
  }
}
