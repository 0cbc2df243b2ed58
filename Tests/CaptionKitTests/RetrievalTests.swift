import Foundation
import XCTest

@testable import CaptionKit

/// The image–sentence matching model: gradients against finite differences, the loss against a
/// direct evaluation, the model file, the retrieval metrics.
final class RetrievalTests: XCTestCase {
  /// Σ out · weights in Double: a scalar loss whose gradient on `out` is `weights`.
  private func dot(_ out: Tensor, _ weights: Tensor) -> Double {
    (0..<out.count).reduce(0.0) { $0 + Double(out[$1]) * Double(weights[$1]) }
  }

  func testL2NormalizeGradientAndUnitRows() {
    let layer = L2Normalize()
    let x = randomTensor([3, 5], seed: 1)
    let weights = randomTensor([3, 5], seed: 2)
    let y = layer.forward(x)
    for r in 0..<3 {
      let norm = (0..<5).reduce(0.0) { $0 + Double(y[r * 5 + $1] * y[r * 5 + $1]) }
      XCTAssertEqual(norm, 1, accuracy: 1e-5)
    }
    let dx = layer.backward(weights).clone()
    assertGradientMatches("l2 input", x: x, analytic: dx, epsilon: 1e-3) {
      self.dot(layer.forward(x), weights)
    }
  }

  func testSentenceEncoderGradientsEveryCell() {
    // rows of 3, 1 and 2 words (and padding); two layers, so layer 1 reads layer 0's concatenation
    let (T, R, V) = (3, 3, 9)
    let tokens = [5, 4, 6, 7, 0, 8, 4, 0, 3]  // [T, R] time-major; 3 = <unk> counts as a word
    let lengths = [3, 1, 3]
    for cell in CellType.allCases {
      let config = RetrievalConfig(cell: cell, embed: 3, hidden: 2, layers: 2, dim: 4)
      let encoder = SentenceEncoder(config: config, vocabularySize: V)
      var generator = SeededGenerator(seed: 5)
      encoder.initialize(using: &generator)
      let weights = randomTensor([R, 4], seed: 6)
      for (_, p) in encoder.namedParameters { p.grad.fill(0) }
      let s = encoder.forward(tokens: tokens, steps: T, lengths: lengths)
      XCTAssertEqual(s.shape, [R, 4])
      encoder.backward(weights)
      let loss = { self.dot(encoder.forward(tokens: tokens, steps: T, lengths: lengths), weights) }
      for (name, p) in encoder.namedParameters {
        assertGradientMatches(
          "sentence \(cell) \(name)", x: p.value, analytic: p.grad.clone(), floor: 5e-3, loss: loss)
      }
    }
  }

  func testSentenceVectorIgnoresPaddingAndWeightIV() {
    // the same words padded differently, and any weight_iv, give the same vector
    let config = RetrievalConfig(cell: .lstm, embed: 3, hidden: 2, layers: 1, dim: 4)
    let encoder = SentenceEncoder(config: config, vocabularySize: 9)
    var generator = SeededGenerator(seed: 5)
    encoder.initialize(using: &generator)
    let alone = encoder.forward(tokens: [5, 6], steps: 2, lengths: [2]).clone()
    for (name, p) in encoder.rnn.namedParameters where name.hasSuffix("weight_iv") { p.value.fill(3) }
    let padded = encoder.forward(tokens: [5, 4, 6, 7, 8, 2], steps: 3, lengths: [2, 3])
    for j in 0..<4 { XCTAssertEqual(padded[j], alone[j], accuracy: 1e-6) }
    XCTAssertFalse(encoder.namedParameters.contains { $0.0.hasSuffix("weight_iv") })
  }

  /// The loss written out directly, in Double, from the definition.
  private func referenceLoss(_ u: Tensor, _ s: Tensor, margin: Double, hardest: Bool) -> Double {
    let (B, D, R) = (u.shape[0], u.shape[1], s.shape[0])
    let K = R / B
    func score(_ b: Int, _ r: Int) -> Double {
      (0..<D).reduce(0.0) { $0 + Double(u[b * D + $1] * s[r * D + $1]) }
    }
    var total = 0.0
    for r in 0..<R {
      let b = r / K
      let i2t = (0..<R).filter { $0 / K != b }.map { max(0, margin - score(b, r) + score(b, $0)) }
      let t2i = (0..<B).filter { $0 != b }.map { max(0, margin - score(b, r) + score($0, r)) }
      total += hardest ? (i2t.max() ?? 0) + (t2i.max() ?? 0) : i2t.reduce(0, +) + t2i.reduce(0, +)
    }
    return total / Double(R)
  }

  func testRankingLossBothVariantsAgainstDefinitionAndFiniteDifferences() {
    for (K, negatives) in [(1, RankingLoss.Negatives.sum), (2, .sum), (1, .hardest), (2, .hardest)] {
      let (B, D) = (4, 5)
      let u = randomTensor([B, D], scale: 0.5, seed: 21)
      let s = randomTensor([B * K, D], scale: 0.5, seed: 22)
      let loss = RankingLoss(margin: 0.2)
      let value = loss.forward(images: u, sentences: s, negatives: negatives)
      let expected = referenceLoss(u, s, margin: 0.2, hardest: negatives == .hardest)
      XCTAssertGreaterThan(expected, 0)
      XCTAssertEqual(Double(value), expected, accuracy: 1e-5 * max(1, expected))
      let (du, ds) = loss.backward()
      let (duCopy, dsCopy) = (du.clone(), ds.clone())
      let direct = { self.referenceLoss(u, s, margin: 0.2, hardest: negatives == .hardest) }
      assertGradientMatches(
        "ranking \(negatives) K=\(K) images", x: u, analytic: duCopy, epsilon: 1e-3, loss: direct)
      assertGradientMatches(
        "ranking \(negatives) K=\(K) sentences", x: s, analytic: dsCopy, epsilon: 1e-3, loss: direct)
    }
  }

  func testRetrievalTermGradientReachesImageVectorsAndParameters() {
    // v → image projection → loss ← sentence encoder ← the batch's targets; weight 2
    let config = RetrievalConfig(cell: .gru, embed: 3, hidden: 2, layers: 1, dim: 4)
    let model = RetrievalModel(config: config, vocabularySize: 9, imageSize: 5)
    model.initialize(seed: 3)
    let term = RetrievalTerm(model: model, weight: 2, margin: 0.5)
    let v = randomTensor([3, 5], seed: 8)
    // 3 images × 2 captions, T = 3: rows' targets w… <end> <pad>
    let targets = [4, 5, 6, 7, 8, 4, 2, 6, 2, 5, 2, 8, 0, 2, 0, 2, 0, 2]
    let input = ObjectiveInput(
      imageVectors: v, topStates: Tensor(zeros: [0]), targetTokens: targets, steps: 3, captionsPerImage: 2,
      imageIds: [0, 1, 2])
    XCTAssertEqual(RetrievalModel.lengths(targets: targets, steps: 3, rows: 6), [1, 2, 1, 2, 1, 2])
    for (_, p) in model.namedParameters { p.grad.fill(0) }
    XCTAssertNotNil(term.forward(input))
    let dv = Tensor(zeros: [3, 5])
    term.backward(into: dv)
    // the loss is a Float sum of hinges: a floor of 1e-2 keeps its rounding out of the comparison
    let loss = { 2 * Double(term.forward(input)!) }
    assertGradientMatches("term v", x: v, analytic: dv, floor: 1e-2, loss: loss)
    for (name, p) in model.namedParameters {
      assertGradientMatches("term \(name)", x: p.value, analytic: p.grad.clone(), floor: 1e-2, loss: loss)
    }
  }

  func testModelFileWithAndWithoutRetrievalPart() throws {
    var config = ModelConfig(
      imageSize: 8, layers: [.conv(4), .maxPool], dv: 6, embed: 5, hidden: 7, vocabSize: 11)
    let plain = CaptionModel(config: config)
    XCTAssertNil(plain.retrieval)
    config.retrieval = RetrievalConfig(cell: .lstm, embed: 3, hidden: 2, layers: 2, dim: 4)
    let model = CaptionModel(config: config)
    var generator = SeededGenerator(seed: 1)
    model.initialize(using: &generator)
    let words = Vocabulary.specials + ["a", "red", "blue", "circle", "square", "left", "of"]
    var file = ModelFile(
      config: config, vocabulary: try Vocabulary(words: words),
      tensors: Dictionary(uniqueKeysWithValues: model.namedTensors.map { ($0.name, $0.tensor) }))
    let folder = temporaryFolder()
    let path = folder + "/joint.safetensors"
    try file.save(path: path)
    let loaded = try ModelFile.load(path: path)
    XCTAssertEqual(loaded.config.retrieval, config.retrieval)
    XCTAssertEqual(
      loaded.tensors.keys.filter { $0.hasPrefix("retrieval.") }.sorted(),
      config.retrieval!.expectedTensorShapes(vocabSize: 11, dv: 6).map(\.name).sorted())
    XCTAssertTrue(loaded.tensors["retrieval.rnn.1.bwd.weight_ih"]?.shape == [8, 4])
    // a missing tensor is named; the same captioner without the part is still a valid file
    file.tensors["retrieval.text_proj.bias"] = nil
    XCTAssertThrowsError(try file.save(path: folder + "/bad.safetensors")) {
      XCTAssertTrue("\($0)".contains("retrieval.text_proj.bias"), "\($0)")
    }
    var captionerOnly = file
    captionerOnly.config.retrieval = nil
    captionerOnly.tensors = captionerOnly.tensors.filter { !$0.key.hasPrefix("retrieval.") }
    try captionerOnly.save(path: folder + "/plain.safetensors")
    XCTAssertNil(try ModelFile.load(path: folder + "/plain.safetensors").config.retrieval)
  }

  func testRecallsAndMedianRankOnAKnownCase() {
    // 3 images, 2 captions each; score(n, m) chosen so that the ranks are known
    let imageOf = [0, 0, 1, 1, 2, 2]
    let scores: [[Float]] = [
      [0.9, 0.8, 0.1, 0.1, 0.1, 0.1],
      [0.9, 0.8, 0.7, 0.2, 0.1, 0.1],
      [0.1, 0.1, 0.1, 0.95, 0.5, 0.9],
    ]
    let metrics = RetrievalMetrics.evaluate(imageCount: 3, imageOf: imageOf) { scores[$0][$1] }
    // i2t ranks: image 0 → 1, image 1 → 3 (0.9, 0.8 above 0.7), image 2 → 2 (0.95 above 0.9)
    XCTAssertEqual(metrics["i2t-R@1"]!, 1.0 / 3, accuracy: 1e-12)
    XCTAssertEqual(metrics["i2t-R@5"]!, 1, accuracy: 1e-12)
    XCTAssertEqual(metrics["i2t-medr"]!, 2)
    // t2i ranks per caption (column): 1 (image 1's tie at 0.9 counts for the query), 1, 1,
    // 2 (image 2's 0.95 above the own 0.2), 1, 1
    XCTAssertEqual(metrics["t2i-R@1"]!, 5.0 / 6, accuracy: 1e-12)
    XCTAssertEqual(metrics["t2i-medr"]!, 1)
    XCTAssertEqual(
      metrics["rsum"]!, 100 * (1.0 / 3 + 1 + 1 + 5.0 / 6 + 1 + 1), accuracy: 1e-9)
    // folds: two folds of the same case average to the same metrics
    let doubled = imageOf + imageOf.map { $0 + 3 }
    let folded = RetrievalMetrics.evaluate(imageCount: 6, imageOf: doubled, foldSize: 3) {
      ($0 / 3 == $1 / 6) ? scores[$0 % 3][$1 % 6] : -1
    }
    for (key, value) in metrics { XCTAssertEqual(folded[key]!, value, accuracy: 1e-9, key) }
  }

  /// FNV-1a 64 against its published test vectors and against its definition on a long buffer.
  func testModelHashIsFNV1a64() {
    XCTAssertEqual(JointSpace.hash([]), "cbf29ce484222325")
    XCTAssertEqual(JointSpace.hash(Array("a".utf8)), "af63dc4c8601ec8c")
    XCTAssertEqual(JointSpace.hash(Array("foobar".utf8)), "85944171f73967e8")
    var generator = SeededGenerator(seed: 11)
    let bytes = (0..<100_003).map { _ in UInt8.random(in: 0...255, using: &generator) }
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes { h = (h ^ UInt64(byte)) &* 1_099_511_628_211 }
    XCTAssertEqual(JointSpace.hash(bytes), String(format: "%016llx", h))
  }

  /// The partial selection equals a full sort (score descending, ties by row) for every `top`,
  /// with many ties, and rows in rising, falling and random order of score.
  func testRankEqualsAFullSortWithTies() {
    var generator = SeededGenerator(seed: 5)
    let (n, d) = (300, 4)
    let query: [Float] = [0.5, -0.5, 0.5, 0.5]
    for order in ["random", "rising", "falling"] {
      // values in steps of 1/4: many ties
      var vectors = (0..<(n * d)).map { _ in Float(Int.random(in: -3...3, using: &generator)) / 4 }
      if order != "random" {
        func score(_ row: [Float]) -> Float {
          var dot: Float = 0
          for j in 0..<d { dot += query[j] * row[j] }
          return dot
        }
        let rows: [[Float]] = (0..<n).map { Array(vectors[$0 * d..<($0 + 1) * d]) }
        let rising = rows.sorted { score($0) < score($1) }
        vectors = (order == "rising" ? rising : Array(rising.reversed())).flatMap { $0 }
      }
      var scores: [(row: Int, score: Float)] = []
      for row in 0..<n {
        var dot: Float = 0
        for j in 0..<d { dot += query[j] * vectors[row * d + j] }
        scores.append((row, dot))
      }
      let expected = scores.sorted { $0.score != $1.score ? $0.score > $1.score : $0.row < $1.row }
      for top in [1, 2, 7, 50, n - 1, n, n + 5] {
        let ranked = vectors.withUnsafeBufferPointer {
          JointSpace.rank(query: query, vectors: $0.baseAddress!, count: n, top: top)
        }
        XCTAssertEqual(ranked.map(\.row), expected.prefix(top).map(\.row), "\(order) top \(top)")
        XCTAssertEqual(ranked.map(\.score), expected.prefix(top).map(\.score), "\(order) top \(top)")
      }
    }
  }

  /// The index's `images` list: what `save` writes reads back (escapes, non-ASCII, large numbers);
  /// each defect is one error naming the file and the place.
  func testIndexEntriesReadBackAndDefectsAreNamed() throws {
    let entries = [
      ImageIndex.Entry(path: "/a/\"quoted\" \\ back/slash.png", size: 0, mtime: 1_733_300_000_123_456_789),
      ImageIndex.Entry(path: "/ü/日本/\u{1}\ttab.jpg", size: Int.max, mtime: -5),
    ]
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let text = String(decoding: try encoder.encode(entries), as: UTF8.self)
    XCTAssertEqual(try ImageIndex.readEntries(text, path: "x.index"), entries)
    XCTAssertEqual(try ImageIndex.readEntries("[]", path: "x.index"), [])
    XCTAssertEqual(
      try ImageIndex.readEntries(#"[{"path": "p", "size": 1, "mtime": 2, "extra": [1]}]"#, path: "x.index"),
      [ImageIndex.Entry(path: "p", size: 1, mtime: 2)])
    for (bad, reason) in [
      (#"{"path": "p"}"#, "images: expected an array"),
      (#"[{"path": "p", "size": 1}]"#, "images[0].mtime: missing"),
      (#"[{"path": "p", "size": 1, "mtime": 2}, 7]"#, "images[1]: expected an object"),
      (#"[{"path": 3, "size": 1, "mtime": 2}]"#, "images[0].path: expected a string"),
      (#"[{"path": "p", "size": 1.5, "mtime": 2}]"#, "images[0].size: expected an integer"),
      (#"[{"path": "p", "#, "the index's images list is malformed: "),
    ] {
      XCTAssertThrowsError(try ImageIndex.readEntries(bad, path: "x.index"), bad) { error in
        let error = error as? CaptionError
        XCTAssertEqual(error?.kind, .badModel)
        XCTAssertEqual(error?.path, "x.index")
        XCTAssertTrue(error?.reason.hasPrefix(reason) ?? false, "\(bad): \(error?.reason ?? "")")
      }
    }
  }

  /// An index whose embeddings hold a value that is not finite is refused in one error naming the
  /// file; the same index with finite values loads.
  func testAnIndexWithNonFiniteEmbeddingsIsRefused() throws {
    let entries = [
      ImageIndex.Entry(path: "a.png", size: 1, mtime: 2), ImageIndex.Entry(path: "b.png", size: 3, mtime: 4),
    ]
    let path = temporaryFolder() + "/x.index"
    try ImageIndex(modelHash: "h", dim: 2, entries: entries, embeddings: [1, 0, 0, 1]).save(path: path)
    XCTAssertEqual(try ImageIndex.load(path: path).embeddings, [1, 0, 0, 1])
    try ImageIndex(modelHash: "h", dim: 2, entries: entries, embeddings: [1, 0, .infinity, 1]).save(
      path: path)
    XCTAssertThrowsError(try ImageIndex.load(path: path)) { error in
      let error = error as? CaptionError
      XCTAssertEqual(error?.kind, .badModel)
      XCTAssertEqual(error?.path, path)
      XCTAssertEqual(error?.reason, "embeddings hold a value that is not finite")
    }
  }
}
