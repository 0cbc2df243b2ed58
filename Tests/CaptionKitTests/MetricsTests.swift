import Foundation
import XCTest

@testable import CaptionKit

/// Parity with pycocoevalcap 1.2 on fixtures made by scripts/make_metric_fixtures.py, hand-computed
/// cases, and the COCO file checks of `caption score`.
final class MetricsTests: XCTestCase {
  struct FixtureSet {
    var results: Data
    var references: Data
    var candidateTokens: [Int: [String]]
    var referenceTokens: [Int: [[String]]]
    var expected: [String: Double]
    var perImage: [Int: [String: Double]]
  }

  func loadSet(_ name: String) throws -> FixtureSet {
    let data = try Data(contentsOf: URL(fileURLWithPath: fixturePath("metrics/set-\(name).json")))
    let root = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    let tokens = try XCTUnwrap(root["tokens"] as? [String: Any])
    let candidates = try XCTUnwrap(tokens["candidates"] as? [String: [String]])
    let references = try XCTUnwrap(tokens["references"] as? [String: [[String]]])
    let perImage = try XCTUnwrap(root["per_image"] as? [String: [String: Double]])
    return FixtureSet(
      results: try JSONSerialization.data(withJSONObject: root["results"]!),
      references: try JSONSerialization.data(withJSONObject: root["references"]!),
      candidateTokens: Dictionary(uniqueKeysWithValues: candidates.map { (Int($0.key)!, $0.value) }),
      referenceTokens: Dictionary(uniqueKeysWithValues: references.map { (Int($0.key)!, $0.value) }),
      expected: try XCTUnwrap(root["expected"] as? [String: Double]),
      perImage: Dictionary(uniqueKeysWithValues: perImage.map { (Int($0.key)!, $0.value) }))
  }

  func assertScores(
    _ scores: CaptionScores, match set: FixtureSet, _ name: String, file: StaticString = #filePath,
    line: UInt = #line
  ) {
    let ours = scores.jsonObject()
    for key in CaptionScores.keys {
      let tolerance = key == "CIDEr-D" ? 1e-3 : 1e-4
      XCTAssertEqual(
        ours[key]!, set.expected[key]!, accuracy: tolerance, "\(name) \(key)", file: file, line: line)
    }
    XCTAssertEqual(scores.imageCount, set.perImage.count, file: file, line: line)
    for (id, expected) in set.perImage {
      XCTAssertEqual(
        scores.perImageCIDEr[id] ?? -1, expected["CIDEr-D"]!, accuracy: 1e-3, "\(name) image \(id) CIDEr-D",
        file: file, line: line)
      XCTAssertEqual(
        scores.perImageROUGE[id] ?? -1, expected["ROUGE-L"]!, accuracy: 1e-4, "\(name) image \(id) ROUGE-L",
        file: file, line: line)
      XCTAssertEqual(
        scores.perImageBLEU[id]?[3] ?? -1, expected["BLEU-4"]!, accuracy: 1e-4, "\(name) image \(id) BLEU-4",
        file: file, line: line)
    }
  }

  /// Our metrics on the official tokenizer's tokens equal the official scores (BLEU, ROUGE-L to 1e-4,
  /// CIDEr-D to 1e-3), corpus and per image.
  func testMetricsMatchPycocoevalcapOnTheirTokens() throws {
    for name in ["natural", "edge", "large"] {
      let set = try loadSet(name)
      let scores = CaptionMetrics.score(candidates: set.candidateTokens, references: set.referenceTokens)
      assertScores(scores, match: set, name)
    }
  }

  /// The whole `caption score` path (COCO files, our tokenizer, our metrics) equals the official run.
  func testScoreFromCOCOFilesMatchesPycocoevalcap() throws {
    for name in ["natural", "edge", "large"] {
      let set = try loadSet(name)
      let results = try COCOFiles.parseResults(set.results, path: "results.json")
      let references = try COCOFiles.parseReferences(set.references, path: "refs.json")
      let run = try COCOFiles.score(
        results: results, references: references, resultsPath: "results.json", referencesPath: "refs.json")
      assertScores(run.scores, match: set, name)
      XCTAssertEqual(run.referencesWithoutResult, name == "natural" ? 2 : 0)
    }
  }

  /// The benchmark's first synthetic captions for seed 1, written down (its timings compare runs).
  func testBenchmarkCaptionsArePinned() {
    var generator = SeededGenerator(seed: 1)
    XCTAssertEqual(
      (0..<3).map { _ in MetricsBenchmark.sentence(&generator) },
      [
        "a group of people looking down a street, looking happy.", "The surfer lying on a couch.",
        "a skier is standing by the water.",
      ])
  }

  // MARK: Hand-computed cases

  func testIdenticalCaptionScoresOneForBLEUAndROUGE() {
    let words = ["a", "cat", "on", "a", "mat"]
    let scores = CaptionMetrics.score(candidates: [1: words], references: [1: [words]])
    for k in 0..<4 { XCTAssertEqual(scores.bleu[k], 1, accuracy: 1e-9) }
    XCTAssertEqual(scores.rougeL, 1, accuracy: 1e-12)
    // One image: ln N = 0, every TF-IDF weight is 0, so CIDEr-D is 0.
    XCTAssertEqual(scores.ciderD, 0)
  }

  func testBLEUByHand() {
    // candidate "the the cat" vs reference "the cat sat": unigram matches clip "the" to 1 → 2/3;
    // bigrams: "the the" ✗, "the cat" ✓ → 1/2; no trigram match. Lengths 3 vs 3: no brevity penalty.
    let scores = CaptionMetrics.score(
      candidates: [1: ["the", "the", "cat"]], references: [1: [["the", "cat", "sat"]]])
    XCTAssertEqual(scores.bleu[0], 2.0 / 3.0, accuracy: 1e-9)
    XCTAssertEqual(scores.bleu[1], (2.0 / 3.0 * 1.0 / 2.0).squareRoot(), accuracy: 1e-9)
    // Trigrams: (0 + 1e-15)/(1 + 1e-9) → tiny but not zero.
    XCTAssertLessThan(scores.bleu[2], 1e-4)
    // "closest" reference length, ties to the shorter: candidate of 2 words vs refs of 1 and 3 → r = 1.
    let tie = CaptionMetrics.score(
      candidates: [1: ["a", "b"]], references: [1: [["a", "b", "c"], ["a"]]])
    XCTAssertEqual(tie.bleu[0], 1, accuracy: 1e-9)  // ratio 2/1 ≥ 1: no penalty
    // Shorter candidate than the closest reference: BP = exp(1 − r/c) = exp(1 − 4/2).
    let short = CaptionMetrics.score(candidates: [1: ["a", "b"]], references: [1: [["a", "b", "c", "d"]]])
    XCTAssertEqual(short.bleu[0], exp(1 - 4.0 / 2.0), accuracy: 1e-9)
  }

  func testROUGEByHand() {
    // LCS("a b c d", "a c x d") = 3: P = 3/4, R = 3/4, F = (1+β²)PR/(R+β²P) = 3/4.
    let scores = CaptionMetrics.score(
      candidates: [1: ["a", "b", "c", "d"]], references: [1: [["a", "c", "x", "d"]]])
    XCTAssertEqual(scores.rougeL, 0.75, accuracy: 1e-12)
    // P and R maximised over references independently: P = 2/2 (ref 1), R = 2/2 (ref 2, "a b").
    let mixed = CaptionMetrics.score(
      candidates: [1: ["a", "b"]], references: [1: [["a", "b", "c", "d"], ["a", "b"]]])
    XCTAssertEqual(mixed.rougeL, 1, accuracy: 1e-12)
  }

  func testCIDErByHand() {
    // Two images, one reference each. Image 1: candidate "x" vs reference "x"; image 2: "y" vs "z".
    // N = 2, df(x) = 1 → weight ln 2 for "x"; sim = ln2·ln2/(ln2·ln2) = 1 for n = 1, 0 for n > 1
    // (no bigrams: norms 0, dot 0), δ = 0 → image 1 = 10 · (1/4) = 2.5; image 2 = 0.
    let scores = CaptionMetrics.score(
      candidates: [1: ["x"], 2: ["y"]], references: [1: [["x"]], 2: [["z"]]])
    XCTAssertEqual(scores.perImageCIDEr[1]!, 2.5, accuracy: 1e-12)
    XCTAssertEqual(scores.perImageCIDEr[2]!, 0, accuracy: 1e-12)
    XCTAssertEqual(scores.ciderD, 1.25, accuracy: 1e-12)
  }

  func testOnlyImagesWithACandidateAreScored() {
    let references: [Int: [[String]]] = [1: [["a", "dog"]], 2: [["a", "cat"]], 3: [["a", "bird"]]]
    let scores = CaptionMetrics.score(candidates: [1: ["a", "dog"]], references: references)
    XCTAssertEqual(scores.imageCount, 1)
    XCTAssertEqual(Array(scores.perImageCIDEr.keys), [1])
  }

  func testEmptyInputGivesZeros() {
    let scores = CaptionMetrics.score(candidates: [:], references: [:])
    XCTAssertEqual(
      scores.jsonObject(), Dictionary(uniqueKeysWithValues: CaptionScores.keys.map { ($0, 0.0) }))
  }

  // MARK: COCO files

  func assertThrows(
    _ expected: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void
  ) {
    do {
      try body()
      XCTFail("expected an error containing \"\(expected)\"", file: file, line: line)
    } catch let error as CaptionError {
      XCTAssertTrue(
        error.description.contains(expected), "\"\(error.description)\" lacks \"\(expected)\"", file: file,
        line: line)
    } catch {
      XCTFail("not a CaptionError: \(error)", file: file, line: line)
    }
  }

  let references = Data(
    #"{"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2}, {"id": 0}], "annotations": [{"image_id": 1, "caption": "A dog."}, {"image_id": 2, "caption": "A cat."}, {"image_id": 0, "caption": "zero"}]}"#
      .utf8)

  func testUnknownImageIDIsAnErrorNamingTheEntry() throws {
    let refs = try COCOFiles.parseReferences(references, path: "refs.json")
    let results = try COCOFiles.parseResults(
      Data(#"[{"image_id": 1, "caption": "a dog"}, {"image_id": 42, "caption": "x"}]"#.utf8),
      path: "results.json")
    assertThrows("results.json: entry 1: image_id 42 is not in the references") {
      _ = try COCOFiles.score(
        results: results, references: refs, resultsPath: "results.json", referencesPath: "refs.json")
    }
  }

  func testDuplicateResultIsAnError() {
    assertThrows("results.json: entry 2: two results for image_id 7") {
      _ = try COCOFiles.parseResults(
        Data(
          #"[{"image_id": 7, "caption": "a"}, {"image_id": 8, "caption": "b"}, {"image_id": 7, "caption": "c"}]"#
            .utf8),
        path: "results.json")
    }
  }

  func testMalformedFilesAreErrorsNamingThePlace() {
    assertThrows("results.json: bad JSON") {
      _ = try COCOFiles.parseResults(Data(#"[{"image_id": 1, "caption": "a"#.utf8), path: "results.json")
    }
    assertThrows("results.json: expected a JSON array") {
      _ = try COCOFiles.parseResults(Data(#"{"image_id": 1}"#.utf8), path: "results.json")
    }
    assertThrows("entry 0.image_id: expected an integer") {
      _ = try COCOFiles.parseResults(Data(#"[{"image_id": 1.5, "caption": "a"}]"#.utf8), path: "r.json")
    }
    assertThrows("entry 0.image_id: expected an integer") {
      _ = try COCOFiles.parseResults(Data(#"[{"image_id": 2.0, "caption": "a"}]"#.utf8), path: "r.json")
    }
    assertThrows("r.json: bad JSON: line 1, column 34: key \"image_id\" appears twice in an object (byte 33)")
    {
      _ = try COCOFiles.parseResults(
        Data(#"[{"image_id": 1, "caption": "a", "image_id": 2}]"#.utf8), path: "r.json")
    }
    assertThrows("entry 0.caption: missing") {
      _ = try COCOFiles.parseResults(Data(#"[{"image_id": 1}]"#.utf8), path: "r.json")
    }
    assertThrows("refs.json: annotations[0].image_id: missing") {
      _ = try COCOFiles.parseReferences(Data(#"{"annotations": [{"caption": "a"}]}"#.utf8), path: "refs.json")
    }
    assertThrows("refs.json: annotations: missing") {
      _ = try COCOFiles.parseReferences(Data(#"{"images": []}"#.utf8), path: "refs.json")
    }
    assertThrows("refs.json: bad JSON") {
      _ = try COCOFiles.parseReferences(Data([0xFF, 0xFE, 0x00]), path: "refs.json")
    }
    assertThrows("missing.json: no such file") { _ = try COCOFiles.readResults("missing.json") }
    assertThrows("r.json: holds no results") {
      _ = try COCOFiles.score(
        results: [], references: COCOReferences(), resultsPath: "r.json", referencesPath: "refs.json")
    }
  }

  func testFilesRoundTripAndImagesWithoutResultsAreCounted() throws {
    let folder = temporaryFolder()
    let refs = try COCOFiles.parseReferences(references, path: "refs.json")
    XCTAssertEqual(refs.imageIDs, [1, 2, 0])
    XCTAssertEqual(refs.captions[0], ["zero"])
    XCTAssertEqual(refs.fileNames[1], "a.jpg")
    let results = [COCOResult(imageID: 1, caption: "A dog."), COCOResult(imageID: 0, caption: "zero")]
    try COCOFiles.writeResults(results, to: folder + "/results.json")
    try COCOFiles.writeReferences(refs, to: folder + "/refs.json")
    XCTAssertEqual(try COCOFiles.readResults(folder + "/results.json"), results)
    let reread = try COCOFiles.readReferences(folder + "/refs.json")
    XCTAssertEqual(reread.imageIDs, refs.imageIDs)
    XCTAssertEqual(reread.captions, refs.captions)
    let run = try COCOFiles.score(
      results: results, references: reread, resultsPath: "results.json", referencesPath: "refs.json")
    XCTAssertEqual(run.referencesWithoutResult, 1)
    XCTAssertEqual(run.scores.imageCount, 2)
    XCTAssertEqual(run.scores.rougeL, 1, accuracy: 1e-12)
  }

  /// Scoring 5 000 images × 5 references is linear: every caption's n-grams are interned once
  /// (counted: the n-grams of n ≤ 4 of each caption, no more), not once per comparison.
  func testScoringInternsEachCaptionsNGramsOnce() {
    var generator = SeededGenerator(seed: 1)
    var candidates: [Int: [String]] = [:]
    var references: [Int: [[String]]] = [:]
    var ngrams = 0
    func count(_ tokens: [String]) -> [String] {
      ngrams += (1...4).reduce(0) { $0 + max(0, tokens.count - $1 + 1) }
      return tokens
    }
    for id in 0..<5000 {
      candidates[id] = count(PTBTokenizer.tokenize(MetricsBenchmark.sentence(&generator)))
      references[id] = (0..<5).map { _ in count(PTBTokenizer.tokenize(MetricsBenchmark.sentence(&generator)))
      }
    }
    let table = NGramTable()
    let scores = CaptionMetrics.score(candidates: candidates, references: references, table: table)
    XCTAssertEqual(scores.imageCount, 5000)
    XCTAssertEqual(table.lookups, ngrams)
    XCTAssertGreaterThan(ngrams, 5000 * 6 * 20)
    XCTAssertEqual(scores, CaptionMetrics.score(candidates: candidates, references: references))
  }
}
