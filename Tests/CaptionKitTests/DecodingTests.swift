import Foundation
import XCTest

@testable import CaptionKit

/// A hand-built `StepModel`: the logits of a row are a function of (image, step, last token fed).
/// The image of row r is `imageVectors[r, 0]` (an integer). Counts its calls, so tests can check the
/// batching.
final class TableModel: StepModel {
  struct State {
    var image: [Int]
    var last: [Int]
    var step: [Int]
  }

  let vocabularySize: Int
  /// logits(image, step, last) → [V]
  let logits: (_ image: Int, _ step: Int, _ last: Int) -> [Float]
  private(set) var stepCalls = 0
  private(set) var largestBatch = 0

  init(vocabularySize: Int, logits: @escaping (Int, Int, Int) -> [Float]) {
    self.vocabularySize = vocabularySize
    self.logits = logits
  }

  func initialState(imageVectors: Tensor) -> State {
    let rows = imageVectors.shape[0]
    let width = imageVectors.count / max(rows, 1)
    let images = (0..<rows).map { Int(imageVectors[$0 * width]) }
    return State(
      image: images, last: [Int](repeating: -1, count: rows), step: [Int](repeating: 0, count: rows))
  }

  func step(tokens: [Int], state: inout State, logits output: Tensor) {
    let rows = state.image.count
    precondition(tokens.count == rows && output.shape == [rows, vocabularySize])
    stepCalls += 1
    largestBatch = max(largestBatch, rows)
    for r in 0..<rows {
      let row = logits(state.image[r], state.step[r], tokens[r])
      precondition(row.count == vocabularySize)
      for j in 0..<vocabularySize { output[r * vocabularySize + j] = row[j] }
      state.last[r] = tokens[r]
      state.step[r] += 1
    }
  }

  func gather(_ state: State, rows: [Int]) -> State {
    State(
      image: rows.map { state.image[$0] }, last: rows.map { state.last[$0] },
      step: rows.map { state.step[$0] })
  }
}

// Token ids of the small vocabularies below: specials 0...3, then words.
private let pad = 0
private let start = 1
private let end = 2
private let unk = 3
private let a = 4
private let b = 5
private let c = 6
private let d = 7

/// Logits equal to log p, so that log-softmax gives back log p.
private func logits(_ p: [Double]) -> [Float] { p.map { Float(log($0)) } }

/// imageVectors [count, 2] whose row i names image `ids[i]`.
private func images(_ ids: [Int]) -> Tensor {
  Tensor(shape: [ids.count, 2], values: ids.flatMap { [Float($0), 0] })
}

/// A seeded pseudo-random table model: every (image, step, last) gets its own logits in
/// [-spread, spread], with `<end>` shifted by `endBias`.
private func randomModel(
  vocabularySize: Int, seed: UInt64, spread: Float = 3, endBias: Float = 0
) -> TableModel {
  TableModel(vocabularySize: vocabularySize) { image, step, last in
    var generator = SeededGenerator(
      seed: seed &+ UInt64(image) &* 1_000_003 &+ UInt64(step) &* 7919 &+ UInt64(last + 1) &* 104_729)
    var row = (0..<vocabularySize).map { _ in Float.random(in: -spread...spread, using: &generator) }
    row[end] += endBias
    return row
  }
}

/// The log-probability of `caption` under `model` for image `image`, by teacher forcing: feeds
/// `<start> w_1 … w_n` to a fresh one-row state and sums log-softmax (in Double, computed here) of
/// `w_1 … w_n` and of `<end>` when the caption ended with it.
private func teacherForcedLogprob(model: TableModel, image: Int, caption: DecodedCaption) -> Double {
  var state = model.initialState(imageVectors: images([image]))
  let V = model.vocabularySize
  let out = Tensor(zeros: [1, V])
  let targets = caption.tokens + (caption.endedWithEnd ? [end] : [])
  var fed = start
  var total = 0.0
  for target in targets {
    model.step(tokens: [fed], state: &state, logits: out)
    let values = out.array.map(Double.init)
    let top = values.max()!
    let logZ = top + log(values.reduce(0) { $0 + exp($1 - top) })
    total += values[target] - logZ
    fed = target
  }
  return total
}

final class DecodingTests: XCTestCase {
  // MARK: - Greedy versus beam search on a hand-built model

  /// Step 0: a 0.36, b 0.34, c 0.13, d 0.13 (specials 0.01 each). After a: <end> 0.25, c 0.15, the
  /// rest 0.1 each. After b: <end> 0.9. Greedy takes a then <end>: p = 0.36·0.25 = 0.09; the best
  /// caption is b <end>: p = 0.34·0.9 = 0.306.
  private let handModel = TableModel(vocabularySize: 8) { _, step, last in
    if step == 0 { return logits([0.01, 0.01, 0.01, 0.01, 0.36, 0.34, 0.13, 0.13]) }
    if last == a { return logits([0.1, 0.1, 0.25, 0.1, 0.1, 0.1, 0.15, 0.1]) }
    if last == b { return logits([0.01, 0.01, 0.9, 0.01, 0.02, 0.02, 0.02, 0.01]) }
    return logits([0.01, 0.01, 0.93, 0.01, 0.01, 0.01, 0.01, 0.01])
  }

  func testGreedyTakesTheLocallyBestWordAndBeamFindsTheMoreProbableCaption() {
    let greedy = CaptionDecoder.greedy(
      model: handModel, imageVectors: images([0]), options: DecodingOptions())
    XCTAssertEqual(greedy.count, 1)
    XCTAssertEqual(greedy[0].tokens, [a])
    XCTAssertTrue(greedy[0].endedWithEnd)
    XCTAssertEqual(greedy[0].logprob, log(0.36) + log(0.25), accuracy: 1e-5)

    for k in [2, 3, 5] {
      let beam = CaptionDecoder.beamSearch(
        model: handModel, imageVectors: images([0]), options: DecodingOptions(beamSize: k))
      XCTAssertEqual(beam[0].tokens, [b], "beam \(k)")
      XCTAssertTrue(beam[0].endedWithEnd)
      XCTAssertEqual(beam[0].logprob, log(0.34) + log(0.9), accuracy: 1e-5, "beam \(k)")
    }
    // decode() dispatches on the options
    let viaDecode = CaptionDecoder.decode(
      model: handModel, imageVectors: images([0]), options: DecodingOptions(beamSize: 3))
    XCTAssertEqual(viaDecode[0].tokens, [b])
    let viaDecodeGreedy = CaptionDecoder.decode(
      model: handModel, imageVectors: images([0]), options: DecodingOptions(beamSize: 1))
    XCTAssertEqual(viaDecodeGreedy, greedy)
  }

  func testBeamOfOneIsGreedy() {
    for seed in UInt64(1)...6 {
      let model = randomModel(vocabularySize: 12, seed: seed, endBias: 1)
      for options in [
        DecodingOptions(maxLength: 8), DecodingOptions(maxLength: 3, forbidUnk: true),
        DecodingOptions(blockRepeatedTrigrams: true, lengthPenaltyAlpha: 0.7),
      ] {
        var beamOptions = options
        beamOptions.beamSize = 1
        let greedy = CaptionDecoder.greedy(
          model: model, imageVectors: images([0, 1, 2, 3]), options: options)
        let beam = CaptionDecoder.beamSearch(
          model: model, imageVectors: images([0, 1, 2, 3]), options: beamOptions)
        XCTAssertEqual(beam, greedy, "seed \(seed)")
      }
    }
  }

  /// With a beam wide enough to keep every hypothesis, beam search is exhaustive: it must find the
  /// best caption of all (here 4 words, so every caption of up to 2 words plus <end>, or 3 words
  /// cut), under α = 0 and under α = 1.
  func testWideBeamFindsTheBestCaptionOfAllByBruteForce() {
    let words = [unk, a, b, c]  // every token but <pad>, <start> and <end>
    for seed in UInt64(10)...15 {
      let model = randomModel(vocabularySize: 7, seed: seed, spread: 2, endBias: 0.5)
      for alpha in [0.0, 1.0] {
        var bestScore = -Double.infinity
        var candidates: [DecodedCaption] = []
        for n in 0...2 {
          var sequences: [[Int]] = [[]]
          for _ in 0..<n { sequences = sequences.flatMap { s in words.map { s + [$0] } } }
          candidates += sequences.map { DecodedCaption(tokens: $0, logprob: 0, endedWithEnd: true) }
        }
        var cut: [[Int]] = [[]]
        for _ in 0..<3 { cut = cut.flatMap { s in words.map { s + [$0] } } }
        candidates += cut.map { DecodedCaption(tokens: $0, logprob: 0, endedWithEnd: false) }
        for candidate in candidates {
          let lp = teacherForcedLogprob(model: model, image: 0, caption: candidate)
          bestScore = max(bestScore, lp / pow(Double(candidate.steps), alpha))
        }
        let beam = CaptionDecoder.beamSearch(
          model: model, imageVectors: images([0]),
          options: DecodingOptions(maxLength: 3, beamSize: 64, lengthPenaltyAlpha: alpha))[0]
        let beamScore = beam.logprob / pow(Double(beam.steps), alpha)
        XCTAssertEqual(beamScore, bestScore, accuracy: 1e-5, "seed \(seed) α \(alpha)")
      }
    }
  }

  func testLengthNormalisationChangesTheRanking() {
    // <end> right away: p = 0.5. Or a then <end>: 0.45 · 0.99 ≈ 0.4455 (log ≈ −0.81, per step −0.40)
    let model = TableModel(vocabularySize: 8) { _, step, last in
      if step == 0 { return logits([0.01, 0.01, 0.5, 0.01, 0.45, 0.01, 0.005, 0.005]) }
      return logits([0.001, 0.001, 0.993, 0.001, 0.001, 0.001, 0.001, 0.001])
    }
    let plain = CaptionDecoder.beamSearch(
      model: model, imageVectors: images([0]), options: DecodingOptions(beamSize: 2))[0]
    XCTAssertEqual(plain.tokens, [])
    XCTAssertEqual(plain.logprob, log(0.5), accuracy: 1e-5)
    let normalised = CaptionDecoder.beamSearch(
      model: model, imageVectors: images([0]),
      options: DecodingOptions(beamSize: 2, lengthPenaltyAlpha: 1))[0]
    XCTAssertEqual(normalised.tokens, [a])
    XCTAssertEqual(normalised.logprob, log(0.45) + log(0.993), accuracy: 1e-5)
  }

  // MARK: - Reported log-probabilities

  func testReportedLogprobEqualsTeacherForcing() {
    let model = randomModel(vocabularySize: 15, seed: 42, endBias: 1.5)
    let ids = Array(0..<6)
    let decoders: [(String, DecodingOptions)] = [
      ("greedy", DecodingOptions(beamSize: 1)),
      ("beam", DecodingOptions(beamSize: 4)),
      ("beam α", DecodingOptions(beamSize: 3, lengthPenaltyAlpha: 0.7)),
      ("sample", DecodingOptions(sample: true, temperature: 1.5, seed: 3)),
      ("sample top-k", DecodingOptions(sample: true, topK: 3, seed: 4)),
      ("forbid", DecodingOptions(maxLength: 6, forbidUnk: true, blockRepeatedTrigrams: true)),
    ]
    for (name, options) in decoders {
      let captions = CaptionDecoder.decode(model: model, imageVectors: images(ids), options: options)
      XCTAssertEqual(captions.count, ids.count)
      for (image, caption) in captions.enumerated() {
        let expected = teacherForcedLogprob(model: model, image: image, caption: caption)
        XCTAssertEqual(caption.logprob, expected, accuracy: 1e-5 * max(1, abs(expected)), name)
        XCTAssertFalse(caption.tokens.contains { $0 == pad || $0 == start || $0 == end }, name)
        XCTAssertLessThanOrEqual(caption.steps, options.maxLength, name)
      }
    }
  }

  func testMaxLengthCutsWithoutAnEndTerm() {
    // <end> is never likely: every decoder must stop at maxLength with no <end> term
    let model = randomModel(vocabularySize: 10, seed: 5, endBias: -20)
    for options in [
      DecodingOptions(maxLength: 5, beamSize: 1), DecodingOptions(maxLength: 5, beamSize: 3),
      DecodingOptions(maxLength: 5, sample: true, seed: 1),
    ] {
      let caption = CaptionDecoder.decode(model: model, imageVectors: images([0]), options: options)[0]
      XCTAssertEqual(caption.tokens.count, 5)
      XCTAssertFalse(caption.endedWithEnd)
      XCTAssertEqual(
        caption.logprob, teacherForcedLogprob(model: model, image: 0, caption: caption),
        accuracy: 1e-4)
    }
    // a chain a a a a <end>: 5 steps. maxLength 5 keeps <end>; maxLength 4 cuts before it.
    let chain = TableModel(vocabularySize: 8) { _, step, _ in
      step < 4
        ? logits([0.01, 0.01, 0.01, 0.01, 0.9, 0.03, 0.02, 0.01])
        : logits([0.01, 0.01, 0.8, 0.01, 0.1, 0.03, 0.03, 0.01])
    }
    for beam in [1, 3] {
      let five = CaptionDecoder.decode(
        model: chain, imageVectors: images([0]), options: DecodingOptions(maxLength: 5, beamSize: beam))[0]
      XCTAssertEqual(five.tokens, [a, a, a, a])
      XCTAssertTrue(five.endedWithEnd)
      XCTAssertEqual(five.logprob, 4 * log(0.9) + log(0.8), accuracy: 1e-5)
      let four = CaptionDecoder.decode(
        model: chain, imageVectors: images([0]), options: DecodingOptions(maxLength: 4, beamSize: beam))[0]
      XCTAssertEqual(four.tokens, [a, a, a, a])
      XCTAssertFalse(four.endedWithEnd)
      XCTAssertEqual(four.logprob, 4 * log(0.9), accuracy: 1e-5)
    }
  }

  func testPadAndStartAreNeverEmittedEvenWhenMostLikely() {
    // p: pad 0.4, start 0.3, then a 0.2 at step 0 and <end> 0.25 after; <end> at once only 0.03
    let model = TableModel(vocabularySize: 8) { _, step, _ in
      step == 0
        ? logits([0.4, 0.3, 0.03, 0.04, 0.2, 0.01, 0.01, 0.01])
        : logits([0.4, 0.3, 0.25, 0.02, 0.01, 0.01, 0.005, 0.005])
    }
    for options in [
      DecodingOptions(beamSize: 1), DecodingOptions(beamSize: 3),
      DecodingOptions(sample: true, topK: 1), DecodingOptions(sample: true, seed: 9),
    ] {
      let caption = CaptionDecoder.decode(model: model, imageVectors: images([0]), options: options)[0]
      XCTAssertFalse(caption.tokens.contains(pad) || caption.tokens.contains(start))
      if !options.sample || options.topK == 1 {
        XCTAssertEqual(caption.tokens, [a])
        XCTAssertTrue(caption.endedWithEnd)
        // probabilities of the full softmax, not renormalised without pad and start
        XCTAssertEqual(caption.logprob, log(0.2) + log(0.25), accuracy: 1e-5)
      }
    }
  }

  func testUnknownIsEmittedUnlessForbiddenAndTheSoftmaxStaysFull() {
    let model = TableModel(vocabularySize: 8) { _, step, _ in
      step == 0
        ? logits([0.01, 0.01, 0.02, 0.6, 0.3, 0.04, 0.01, 0.01])
        : logits([0.01, 0.01, 0.9, 0.05, 0.01, 0.01, 0.005, 0.005])
    }
    for beam in [1, 3] {
      let allowed = CaptionDecoder.decode(
        model: model, imageVectors: images([0]), options: DecodingOptions(beamSize: beam))[0]
      XCTAssertEqual(allowed.tokens, [unk])
      XCTAssertEqual(allowed.logprob, log(0.6) + log(0.9), accuracy: 1e-5)
      let forbidden = CaptionDecoder.decode(
        model: model, imageVectors: images([0]), options: DecodingOptions(forbidUnk: true, beamSize: beam))[0]
      XCTAssertEqual(forbidden.tokens, [a])
      XCTAssertEqual(forbidden.logprob, log(0.3) + log(0.9), accuracy: 1e-5)
    }
    let sampled = CaptionDecoder.sample(
      model: model, imageVectors: images(Array(0..<200)),
      options: DecodingOptions(forbidUnk: true, sample: true, seed: 2))
    XCTAssertFalse(sampled.contains { $0.tokens.contains(unk) })
  }

  func testRepeatedTrigramsAreBlocked() {
    // start→a, a→b, b→a (second choice c), c→d, d→<end>
    let model = TableModel(vocabularySize: 8) { _, _, last in
      switch last {
      case start: return logits([0.01, 0.01, 0.01, 0.01, 0.9, 0.02, 0.02, 0.02])
      case a: return logits([0.01, 0.01, 0.01, 0.01, 0.02, 0.9, 0.02, 0.02])
      case b: return logits([0.01, 0.01, 0.01, 0.01, 0.6, 0.02, 0.3, 0.04])
      case c: return logits([0.01, 0.01, 0.01, 0.01, 0.02, 0.02, 0.02, 0.9])
      default: return logits([0.01, 0.01, 0.9, 0.01, 0.02, 0.02, 0.02, 0.01])
      }
    }
    let free = CaptionDecoder.greedy(
      model: model, imageVectors: images([0]), options: DecodingOptions(maxLength: 10))[0]
    XCTAssertEqual(free.tokens, [a, b, a, b, a, b, a, b, a, b])
    let blocked = CaptionDecoder.greedy(
      model: model, imageVectors: images([0]),
      options: DecodingOptions(maxLength: 10, blockRepeatedTrigrams: true))[0]
    XCTAssertEqual(blocked.tokens, [a, b, a, b, c, d])
    XCTAssertTrue(blocked.endedWithEnd)
    let expected = log(0.9) + log(0.9) + log(0.6) + log(0.9) + log(0.3) + log(0.9) + log(0.9)
    XCTAssertEqual(blocked.logprob, expected, accuracy: 1e-5)
    // beam 2 finds a b c d <end> (p ≈ 0.197), more probable than greedy's a b a b c d <end> (≈ 0.106)
    let beam = CaptionDecoder.beamSearch(
      model: model, imageVectors: images([0]),
      options: DecodingOptions(maxLength: 10, blockRepeatedTrigrams: true, beamSize: 2))[0]
    XCTAssertEqual(beam.tokens, [a, b, c, d])
    XCTAssertEqual(beam.logprob, 4 * log(0.9) + log(0.3), accuracy: 1e-5)
    // on random models no caption repeats a trigram
    let random = randomModel(vocabularySize: 6, seed: 77, endBias: -3)
    let options = DecodingOptions(maxLength: 20, blockRepeatedTrigrams: true, beamSize: 3)
    for caption in CaptionDecoder.decode(
      model: random, imageVectors: images(Array(0..<8)), options: options)
    {
      let t = caption.tokens
      var seen = Set<[Int]>()
      for i in 0..<max(t.count - 2, 0) {
        XCTAssertTrue(seen.insert(Array(t[i..<i + 3])).inserted, "repeated trigram in \(t)")
      }
    }
  }

  // MARK: - Sampling

  func testSamplingIsReproducibleAndDependsOnTheSeed() {
    let model = randomModel(vocabularySize: 20, seed: 8, spread: 1.5, endBias: 1)
    let vectors = images(Array(0..<20))
    let first = CaptionDecoder.sample(
      model: model, imageVectors: vectors, options: DecodingOptions(sample: true, seed: 11))
    let again = CaptionDecoder.sample(
      model: model, imageVectors: vectors, options: DecodingOptions(sample: true, seed: 11))
    let other = CaptionDecoder.sample(
      model: model, imageVectors: vectors, options: DecodingOptions(sample: true, seed: 12))
    XCTAssertEqual(first, again)
    XCTAssertNotEqual(first.map(\.tokens), other.map(\.tokens))
    // an image's caption does not depend on the rest of the batch
    let prefix = CaptionDecoder.sample(
      model: model, imageVectors: images(Array(0..<5)), options: DecodingOptions(sample: true, seed: 11))
    XCTAssertEqual(prefix, Array(first.prefix(5)))
    let suffix = CaptionDecoder.sample(
      model: model, imageVectors: images(Array(5..<20)),
      options: DecodingOptions(sample: true, seed: 11, streamOffset: 5))
    XCTAssertEqual(suffix, Array(first.suffix(15)))
  }

  /// The sampled captions of three images for seed 11, written down: a change in the sampling
  /// streams is noticed.
  func testSampledCaptionsArePinned() {
    let model = randomModel(vocabularySize: 20, seed: 8, spread: 1.5, endBias: 1)
    let sampled = CaptionDecoder.sample(
      model: model, imageVectors: images([0, 1, 2]),
      options: DecodingOptions(sample: true, temperature: 1.3, seed: 11, streamOffset: 4))
    XCTAssertEqual(sampled.map(\.tokens), [[], [11, 11, 3, 3], [10, 7, 6, 7, 15, 14, 4]])
  }

  func testTopKOfOneIsGreedy() {
    let model = randomModel(vocabularySize: 16, seed: 21, endBias: 0.5)
    let vectors = images(Array(0..<10))
    let greedy = CaptionDecoder.greedy(model: model, imageVectors: vectors, options: DecodingOptions())
    for temperature in [0.5, 1, 3] {
      let sampled = CaptionDecoder.sample(
        model: model, imageVectors: vectors,
        options: DecodingOptions(sample: true, temperature: temperature, topK: 1, seed: 5))
      XCTAssertEqual(sampled, greedy)
    }
  }

  func testTemperatureAndTopKShapeTheSampledDistribution() {
    // step 0: logits a 1, b 0, c −0.5, the rest −30; then <end> for sure
    let model = TableModel(vocabularySize: 8) { _, step, _ in
      step == 0 ? [-30, -30, -30, -30, 1, 0, -0.5, -30] : [-30, -30, 30, -30, -30, -30, -30, -30]
    }
    let n = 4000
    let vectors = images(Array(0..<n))
    for temperature in [0.5, 1.0, 2.0] {
      let captions = CaptionDecoder.sample(
        model: model, imageVectors: vectors,
        options: DecodingOptions(sample: true, temperature: temperature, seed: 99))
      let share = Double(captions.filter { $0.tokens == [a] }.count) / Double(n)
      let z = exp(1 / temperature) + 1 + exp(-0.5 / temperature)
      XCTAssertEqual(share, exp(1 / temperature) / z, accuracy: 0.03, "T = \(temperature)")
      // the reported log-probability is still the plain softmax's
      let plainZ = log(exp(1.0) + 1 + exp(-0.5) + 5 * exp(-30.0))
      for caption in captions.prefix(50) where caption.tokens == [a] {
        XCTAssertEqual(caption.logprob, 1 - plainZ, accuracy: 1e-4)
      }
    }
    let topTwo = CaptionDecoder.sample(
      model: model, imageVectors: vectors, options: DecodingOptions(sample: true, topK: 2, seed: 7))
    XCTAssertFalse(topTwo.contains { $0.tokens == [c] })
    let share = Double(topTwo.filter { $0.tokens == [a] }.count) / Double(n)
    XCTAssertEqual(share, exp(1) / (exp(1) + 1), accuracy: 0.03)
  }

  // MARK: - Batches

  func testABatchDecodesLikeOneImageAtATime() {
    let model = randomModel(vocabularySize: 14, seed: 33, endBias: 1)
    let ids = [4, 0, 7, 2, 9, 1]
    for options in [
      DecodingOptions(beamSize: 1), DecodingOptions(beamSize: 3), DecodingOptions(beamSize: 5),
      DecodingOptions(blockRepeatedTrigrams: true, beamSize: 3, lengthPenaltyAlpha: 1),
    ] {
      let batch = CaptionDecoder.decode(model: model, imageVectors: images(ids), options: options)
      for (i, id) in ids.enumerated() {
        let alone = CaptionDecoder.decode(model: model, imageVectors: images([id]), options: options)
        XCTAssertEqual(batch[i], alone[0], "image \(id) beam \(options.beamSize)")
      }
    }
  }

  func testBeamRunsAllImagesAsOneBatchPerStep() {
    let model = randomModel(vocabularySize: 30, seed: 3, endBias: -2)
    let captions = CaptionDecoder.beamSearch(
      model: model, imageVectors: images(Array(0..<7)),
      options: DecodingOptions(maxLength: 9, beamSize: 4))
    XCTAssertEqual(captions.count, 7)
    let longest = captions.map(\.steps).max()!
    XCTAssertEqual(model.stepCalls, longest)  // one model step per decoder step, for every row
    XCTAssertEqual(model.largestBatch, 7 * 4)
  }

  func testEmptyInputsAndDegenerateOptions() {
    let model = randomModel(vocabularySize: 10, seed: 1)
    for options in [
      DecodingOptions(beamSize: 1), DecodingOptions(beamSize: 3), DecodingOptions(sample: true),
    ] {
      XCTAssertEqual(
        CaptionDecoder.decode(model: model, imageVectors: Tensor(zeros: [0, 2]), options: options), [])
      var oneStep = options
      oneStep.maxLength = 1
      XCTAssertEqual(
        CaptionDecoder.decode(model: model, imageVectors: images([0]), options: oneStep)[0].steps, 1)
    }
    // only the specials: the only allowed word is <end>
    let specialsOnly = randomModel(vocabularySize: 4, seed: 2)
    for options in [DecodingOptions(forbidUnk: true, beamSize: 1), DecodingOptions(forbidUnk: true)] {
      let caption = CaptionDecoder.decode(
        model: specialsOnly, imageVectors: images([0]), options: options)[0]
      XCTAssertEqual(caption.tokens, [])
      XCTAssertTrue(caption.endedWithEnd)
    }
    XCTAssertThrowsError(try DecodingOptions(maxLength: 0).validate())
    XCTAssertThrowsError(try DecodingOptions(maxLength: DecodingOptions.maximumLength + 1).validate())
    XCTAssertNoThrow(try DecodingOptions(maxLength: DecodingOptions.maximumLength).validate())
    XCTAssertThrowsError(try DecodingOptions(beamSize: 0).validate())
    XCTAssertThrowsError(try DecodingOptions(beamSize: DecodingOptions.maximumBeamSize + 1).validate())
    XCTAssertNoThrow(try DecodingOptions(beamSize: DecodingOptions.maximumBeamSize).validate())
    XCTAssertThrowsError(try DecodingOptions(beamSize: 1_000_000).validate())
    XCTAssertThrowsError(try DecodingOptions(temperature: 0).validate())
    XCTAssertThrowsError(try DecodingOptions(temperature: .nan).validate())
    XCTAssertThrowsError(try DecodingOptions(topK: -1).validate())
    XCTAssertThrowsError(try DecodingOptions(lengthPenaltyAlpha: -1).validate())
    XCTAssertNoThrow(try DecodingOptions().validate())
  }

  func testNonFiniteLogitsDoNotTrap() {
    let model = TableModel(vocabularySize: 6) { _, step, _ in
      step == 0
        ? [0, 0, .nan, 0, .nan, .infinity]
        : [-.infinity, -.infinity, -.infinity, -.infinity, -.infinity, -.infinity]
    }
    for options in [
      DecodingOptions(beamSize: 1), DecodingOptions(beamSize: 3), DecodingOptions(sample: true),
    ] {
      let caption = CaptionDecoder.decode(model: model, imageVectors: images([0]), options: options)[0]
      XCTAssertLessThanOrEqual(caption.steps, options.maxLength)
    }
  }

  // MARK: - describe: inputs and output lines

  func testExpandListsDirectoriesSortedReadsStdinAndKeepsMissingPaths() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: folder) }
    for name in ["b.png", "A.JPG", "c.jpeg", "notes.txt", ".hidden.png", "d.Png", "noext"] {
      _ = FileManager.default.createFile(atPath: folder + "/" + name, contents: Data([1]))
    }
    try FileManager.default.createDirectory(
      atPath: folder + "/sub.jpg", withIntermediateDirectories: true)
    _ = FileManager.default.createFile(atPath: folder + "/sub.jpg/inner.png", contents: Data([1]))

    let listed = try DescribeInput.expand(arguments: [folder], readStdin: { nil })
    XCTAssertEqual(listed, ["A.JPG", "b.png", "c.jpeg", "d.Png"].map { folder + "/" + $0 })
    XCTAssertEqual(try DescribeInput.expand(arguments: [folder + "/"], readStdin: { nil }), listed)

    var stdinReads = 0
    let mixed = try DescribeInput.expand(
      arguments: ["missing.jpg", "-", folder + "/sub.jpg", "x.png"],
      readStdin: {
        stdinReads += 1
        return "one.jpg\n\n  \n\(folder)/b.png\r\ntwo words.png\n"
      })
    XCTAssertEqual(stdinReads, 1)
    XCTAssertEqual(
      mixed,
      ["missing.jpg", "one.jpg", folder + "/b.png", "two words.png", folder + "/sub.jpg/inner.png", "x.png"])
    // Nothing to caption is an error naming the folder (or standard input).
    try FileManager.default.createDirectory(atPath: folder + "/empty", withIntermediateDirectories: true)
    _ = FileManager.default.createFile(atPath: folder + "/empty/notes.txt", contents: Data([1]))
    let nothing: [(arguments: [String], stdin: String?, subject: String)] = [
      (["-"], nil, "-"), (["-"], " \n\r\n", "-"),
      ([folder + "/sub.jpg", folder + "/empty"], nil, folder + "/empty"),
    ]
    for (arguments, stdin, subject) in nothing {
      XCTAssertThrowsError(try DescribeInput.expand(arguments: arguments, readStdin: { stdin })) {
        XCTAssertEqual(($0 as? CaptionError)?.path, subject)
        XCTAssertTrue(($0 as? CaptionError)?.reason.hasPrefix("no images found") ?? false, "\($0)")
      }
    }

    XCTAssertTrue(DescribeInput.namesSingleFile(["missing.jpg"]))
    XCTAssertTrue(DescribeInput.namesSingleFile([folder + "/b.png"]))
    XCTAssertFalse(DescribeInput.namesSingleFile([folder]))
    XCTAssertFalse(DescribeInput.namesSingleFile(["-"]))
    XCTAssertFalse(DescribeInput.namesSingleFile(["a.png", "b.png"]))
  }

  func testPlainLines() {
    XCTAssertEqual(
      DescribeOutput.plainLine(path: "x/a.png", caption: "a red circle", bare: false),
      "x/a.png: a red circle")
    XCTAssertEqual(
      DescribeOutput.plainLine(path: "x/a.png", caption: "a red circle", bare: true), "a red circle")
  }

  func testJSONLinesEscapeAndParseBack() throws {
    let path = "dir/\"quoted\" back\\slash\nnew\tline \u{01} é 猫 🐈.png"
    let tokens = ["a", "man's", "\"odd\"", "naïve"]
    let line = DescribeOutput.jsonLine(path: path, tokens: tokens, logprob: -3.25)
    XCTAssertFalse(line.contains("\n"))
    XCTAssertTrue(
      line.hasPrefix(
        "{\"image\": \"dir/\\\"quoted\\\" back\\\\slash\\nnew\\tline \\u0001 é 猫 🐈.png\", \"caption\": "))
    XCTAssertTrue(line.hasSuffix(", \"logprob\": -3.25}"))
    let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
    XCTAssertEqual(object["image"] as? String, path)
    XCTAssertEqual(object["caption"] as? String, "a man's \"odd\" naïve")
    XCTAssertEqual(object["tokens"] as? [String], tokens)
    XCTAssertEqual(object["logprob"] as? Double, -3.25)
    // keys in the order of SPEC §2
    let keys = ["\"image\"", "\"caption\"", "\"tokens\"", "\"logprob\""].map {
      line.range(of: $0)!.lowerBound
    }
    XCTAssertEqual(keys, keys.sorted())

    XCTAssertEqual(
      DescribeOutput.jsonLine(path: "a.png", tokens: [], logprob: 0),
      "{\"image\": \"a.png\", \"caption\": \"\", \"tokens\": [], \"logprob\": 0.0}")
    let small = DescribeOutput.jsonLine(path: "a.png", tokens: ["x"], logprob: -1.5e-7)
    let parsedSmall = try JSONSerialization.jsonObject(with: Data(small.utf8)) as! [String: Any]
    XCTAssertEqual(parsedSmall["logprob"] as? Double, -1.5e-7)
    XCTAssertTrue(DescribeOutput.jsonLine(path: "a", tokens: [], logprob: -.infinity).hasSuffix("null}"))

    let error = DescribeOutput.jsonErrorLine(path: "bad \"x\".jpg", message: "bad \"x\".jpg: truncated")
    XCTAssertEqual(error, "{\"image\": \"bad \\\"x\\\".jpg\", \"error\": \"bad \\\"x\\\".jpg: truncated\"}")
    let parsedError = try JSONSerialization.jsonObject(with: Data(error.utf8)) as! [String: Any]
    XCTAssertEqual(parsedError["error"] as? String, "bad \"x\".jpg: truncated")
  }

  func testDecodedCaptionWords() throws {
    let vocabulary = Vocabulary(specialsAnd: ["a", "dog"])
    let caption = DecodedCaption(tokens: [4, 5], logprob: -1, endedWithEnd: true)
    XCTAssertEqual(caption.words(vocabulary), ["a", "dog"])
    XCTAssertEqual(caption.steps, 3)
  }
}

// MARK: - Cost of beam search on a model the size of SPEC §7's

/// The project's own decoder layers at SPEC §7's sizes (V 1000, E 256, H 512, dv 256, one LSTM
/// layer), randomly initialised, as a `StepModel`: embedding → `RecurrentStack.step` → output
/// `Linear`: a real model's step, for the decoders' counted work.
final class BenchSizedDecoder: StepModel {
  let vocabularySize = 1000
  let dv = 256
  let embed = Embedding(vocabularySize: 1000, embeddingSize: 256)
  let rnn = RecurrentStack(
    cell: .lstm, inputSize: 256, hiddenSize: 512, imageSize: 256, layers: 1, imageInput: .every)
  let out = Linear(inFeatures: 512, outFeatures: 1000)
  let endBias: Float

  init(endBias: Float) {
    var generator = SeededGenerator(seed: 1)
    embed.initialize(using: &generator)
    rnn.initialize(using: &generator)
    out.initialize(using: &generator)
    self.endBias = endBias
  }

  func initialState(imageVectors: Tensor) -> RecurrentState { rnn.makeState(image: imageVectors) }

  func step(tokens: [Int], state: inout RecurrentState, logits: Tensor) {
    let h = rnn.step(input: embed.forward(tokens: tokens), state: &state)  // [rows, H]
    logits.copy(from: out.forward(h))  // [rows, V]
    for r in 0..<state.rows { logits[r * vocabularySize + Vocabulary.end] += endBias }
  }

  func gather(_ state: RecurrentState, rows: [Int]) -> RecurrentState { state.gathered(rows: rows) }
}

/// A model that costs nothing and never ends: its logits are rows of a fixed random table (a copy
/// per row).
final class FreeModel: StepModel {
  let vocabularySize: Int
  let table: Tensor  // [64, V]
  init(vocabularySize: Int) {
    self.vocabularySize = vocabularySize
    table = randomTensor([64, vocabularySize], scale: 4, seed: 17)
    for i in 0..<64 { table[i * vocabularySize + Vocabulary.end] = -1000 }  // never ends
  }
  func initialState(imageVectors: Tensor) -> [Int] { [Int](repeating: 0, count: imageVectors.shape[0]) }
  func step(tokens: [Int], state: inout [Int], logits: Tensor) {
    for r in 0..<state.count {
      let source = table.pointer + ((tokens[r] &+ state[r] &* 7) & 63) * vocabularySize
      (logits.pointer + r * vocabularySize).update(from: source, count: vocabularySize)
      state[r] += 1
    }
  }
  func gather(_ state: [Int], rows: [Int]) -> [Int] { rows.map { state[$0] } }
}

/// Wraps a model and counts what a decoder asks of it: the rows of every step, the logits buffers it
/// hands over, the gathers.
final class CountingModel<Inner: StepModel>: StepModel {
  let inner: Inner
  private(set) var rowsPerStep: [Int] = []
  private(set) var logitsBuffers = Set<UnsafeMutablePointer<Float>>()
  private(set) var gathers = 0
  init(_ inner: Inner) { self.inner = inner }
  var vocabularySize: Int { inner.vocabularySize }
  func initialState(imageVectors: Tensor) -> Inner.State { inner.initialState(imageVectors: imageVectors) }
  func step(tokens: [Int], state: inout Inner.State, logits: Tensor) {
    rowsPerStep.append(tokens.count)
    logitsBuffers.insert(logits.pointer)
    inner.step(tokens: tokens, state: &state, logits: logits)
  }
  func gather(_ state: Inner.State, rows: [Int]) -> Inner.State {
    gathers += 1
    return inner.gather(state, rows: rows)
  }
}

final class DecodingCostTests: XCTestCase {
  /// What keeps the decoders' own work small: one model step per decoder step for all the live rows
  /// of all images, into one logits buffer allocated once, and no reordering while no row finishes.
  func testDecodersStepAllRowsAtOnceIntoOneBuffer() {
    let vectors = Tensor(zeros: [8, 4])
    for (name, options, rows, gathers) in [
      ("greedy", DecodingOptions(maxLength: 16, beamSize: 1), [Int](repeating: 8, count: 16), 0),
      ("beam 5", DecodingOptions(maxLength: 16, beamSize: 5), [8] + [Int](repeating: 40, count: 15), 15),
      (
        "sample top-k 10", DecodingOptions(maxLength: 16, sample: true, topK: 10),
        [Int](repeating: 8, count: 16), 0
      ),
    ] {
      let model = CountingModel(FreeModel(vocabularySize: 1000))  // never ends
      let captions = CaptionDecoder.decode(model: model, imageVectors: vectors, options: options)
      XCTAssertEqual(captions.map(\.tokens.count), [Int](repeating: 16, count: 8), name)
      XCTAssertEqual(model.rowsPerStep, rows, name)
      XCTAssertEqual(model.logitsBuffers.count, 1, name)
      XCTAssertEqual(model.gathers, gathers, name)
    }
  }

  /// Beam K costs at most K times greedy's model work, in the same number of model calls (its K
  /// hypotheses of every image run as rows of one call): counted on an LSTM-sized model with
  /// <end> suppressed (beam search's worst case, all 16 steps) and with <end> allowed.
  func testBeamFiveStepsAtMostFiveTimesGreedysRowsInAsManyCalls() {
    for endBias in [Float(-1000), 0] {
      for imageCount in [1, 8] {
        let vectors = randomTensor([imageCount, 256], scale: 1, seed: 9)
        let greedy = CountingModel(BenchSizedDecoder(endBias: endBias))
        let beam = CountingModel(BenchSizedDecoder(endBias: endBias))
        _ = CaptionDecoder.decode(
          model: greedy, imageVectors: vectors, options: DecodingOptions(maxLength: 16, beamSize: 1))
        _ = CaptionDecoder.decode(
          model: beam, imageVectors: vectors, options: DecodingOptions(maxLength: 16, beamSize: 5))
        let label = "end bias \(endBias), \(imageCount) images"
        let (greedyRows, beamRows) = (greedy.rowsPerStep.reduce(0, +), beam.rowsPerStep.reduce(0, +))
        XCTAssertLessThanOrEqual(beam.rowsPerStep.count, 16, label)
        XCTAssertLessThanOrEqual(beamRows, 5 * 16 * imageCount, label)
        XCTAssertTrue(beam.rowsPerStep.allSatisfy { $0 <= 5 * imageCount }, label)
        if endBias < 0 {
          XCTAssertEqual(greedy.rowsPerStep.count, 16, label)
          XCTAssertEqual(beam.rowsPerStep.count, 16, label)
          XCTAssertEqual(greedyRows, 16 * imageCount, label)
          XCTAssertEqual(beamRows, imageCount + 15 * 5 * imageCount, label)
        }
      }
    }
  }
}

final class TokenChoiceTests: XCTestCase {
  func testLogSumExpMatchesDoublePrecision() {
    var generator = SeededGenerator(seed: 4)
    for count in [1, 7, 8, 9, 100, 1000, 1003] {
      for spread in [Float(0.1), 5, 40, 200] {
        var values = (0..<count).map { _ in Float.random(in: -spread...spread, using: &generator) }
        if count > 3 { values[2] = -.infinity }
        let row = Tensor(shape: [count], values: values)
        let top = Double(values.max()!)
        let exact = top + log(values.reduce(0.0) { $0 + exp(Double($1) - top) })
        let fast = TokenChoice.logSumExp(row.pointer, count: count)
        XCTAssertEqual(fast, exact, accuracy: 2e-6 * max(1, abs(exact)), "count \(count) spread \(spread)")
      }
    }
    // e^x itself, over its range
    for x in stride(from: Float(-86), through: 0, by: 0.37) {
      let e = TokenChoice.expOfNonPositive(SIMD8(repeating: x))[0]
      XCTAssertEqual(Double(e), exp(Double(x)), accuracy: 3e-7 * exp(Double(x)), "x = \(x)")
    }
    XCTAssertEqual(TokenChoice.expOfNonPositive(SIMD8(repeating: -.infinity))[0], expf(-87))
    XCTAssertEqual(TokenChoice.expOfNonPositive(SIMD8(repeating: .nan))[0], expf(-87))
  }

  func testSelectTopIsAPartialSortThatSkipsBannedTokens() {
    let row = Tensor(shape: [8], values: [3, -.infinity, 5, 1, 5, .nan, 4, 2])
    var top: [Int] = []
    TokenChoice.selectTop(row.pointer, count: 8, k: 3, into: &top)
    XCTAssertEqual(top, [2, 4, 6])  // 5, 5 (lower index first), 4
    TokenChoice.selectTop(row.pointer, count: 8, k: 10, into: &top)
    XCTAssertEqual(top, [2, 4, 6, 0, 7, 3])
    XCTAssertEqual(TokenChoice.argmax(row.pointer, count: 8), 2)
    let banned = Tensor(shape: [4], values: [-.infinity, -.infinity, -.infinity, -.infinity])
    TokenChoice.selectTop(banned.pointer, count: 4, k: 2, into: &top)
    XCTAssertEqual(top, [Vocabulary.end])
    XCTAssertEqual(TokenChoice.argmax(banned.pointer, count: 4), Vocabulary.end)
  }
}

final class DescribePlumbingTests: XCTestCase {
  func testLinesForSuccessAndFailure() {
    let ok: Result<(words: [String], logprob: Double), CaptionError> = .success((["a", "dog"], -2.5))
    let bad: Result<(words: [String], logprob: Double), CaptionError> = .failure(
      CaptionError(.truncated, path: "x.jpg", "the data ends early"))
    XCTAssertEqual(
      DescribeOutput.lines(path: "p.png", outcome: ok, json: false, bare: false).stdout, "p.png: a dog")
    XCTAssertEqual(DescribeOutput.lines(path: "p.png", outcome: ok, json: false, bare: true).stdout, "a dog")
    let json = DescribeOutput.lines(path: "p.png", outcome: ok, json: true, bare: true)
    XCTAssertEqual(
      json.stdout,
      "{\"image\": \"p.png\", \"caption\": \"a dog\", \"tokens\": [\"a\", \"dog\"], \"logprob\": -2.5}")
    XCTAssertNil(json.stderr)
    let plainFailure = DescribeOutput.lines(path: "x.jpg", outcome: bad, json: false, bare: false)
    XCTAssertNil(plainFailure.stdout)
    XCTAssertEqual(plainFailure.stderr, "x.jpg: the data ends early")
    let jsonFailure = DescribeOutput.lines(path: "x.jpg", outcome: bad, json: true, bare: false)
    XCTAssertEqual(jsonFailure.stdout, "{\"image\": \"x.jpg\", \"error\": \"the data ends early\"}")
    XCTAssertEqual(jsonFailure.stderr, "x.jpg: the data ends early")
  }
}

extension DescribePlumbingTests {
  func testRunCaptionsInBatchesInOrderAndCountsFailures() {
    // image i: "<start> → word i+4 → <end>" (vocabulary of 4 words)
    let model = TableModel(vocabularySize: 8) { image, step, _ in
      var row = [Float](repeating: 0, count: 8)
      row[step == 0 ? 4 + image % 4 : end] = 5
      return row
    }
    let vocabulary = Vocabulary(specialsAnd: ["zero", "one", "two", "three"])
    let paths = ["img0", "bad", "img1", "img2", "img3", "missing", "img1"]
    var stdout: [String] = []
    var stderr: [String] = []
    var batchSizes: [Int] = []
    for json in [false, true] {
      stdout = []
      stderr = []
      batchSizes = []
      let failures = DescribeRun.run(
        paths: paths, batchSize: 3, model: model, vocabulary: vocabulary,
        options: DecodingOptions(), json: json, bare: false,
        load: { path -> Int in
          guard path.hasPrefix("img") else {
            throw CaptionError(.unreadable, path: path, "no such file")
          }
          return Int(path.dropFirst(3))!
        },
        encode: { ids in
          batchSizes.append(ids.count)
          return images(ids)
        },
        write: { out, err in
          if let out { stdout.append(out) }
          if let err { stderr.append(err) }
        })
      XCTAssertEqual(failures, 2)
      XCTAssertEqual(batchSizes, [2, 2, 1])  // batches of 3 paths, failed loads left out
      XCTAssertEqual(stderr, ["bad: no such file", "missing: no such file"])
      if json {
        XCTAssertEqual(stdout.count, 7)
        XCTAssertEqual(stdout[1], "{\"image\": \"bad\", \"error\": \"no such file\"}")
        XCTAssertTrue(
          stdout[3].hasPrefix("{\"image\": \"img2\", \"caption\": \"two\", \"tokens\": [\"two\"]"))
      } else {
        XCTAssertEqual(stdout, ["img0: zero", "img1: one", "img2: two", "img3: three", "img1: one"])
      }
    }
    // sampled captions do not depend on the batch size
    let sampler = randomModel(vocabularySize: 12, seed: 4, endBias: 1)
    func sampledLines(batchSize: Int) -> [String] {
      var lines: [String] = []
      _ = DescribeRun.run(
        paths: (0..<10).map { "img\($0)" }, batchSize: batchSize, model: sampler,
        vocabulary: Vocabulary(specialsAnd: (4..<12).map { "w\($0)" }),
        options: DecodingOptions(sample: true, seed: 3), json: true, bare: false,
        load: { Int($0.dropFirst(3))! }, encode: { images($0) }, write: { out, _ in lines.append(out!) })
      return lines
    }
    XCTAssertEqual(sampledLines(batchSize: 3), sampledLines(batchSize: 10))
  }
}
