import Foundation
import XCTest

@testable import CaptionKit

/// Caption reranking with the joint space (SPEC §3b): the choice by its formula, the cosines against
/// the joint space computed one caption at a time, λ's calibration, and `describe`/`evaluate`/
/// `calibrate --rerank…` with their bad inputs.
final class RerankTests: XCTestCase {
  let joint = fixturePath("parity/retrieval_gru.model.safetensors")
  let plain = fixturePath("parity/lstm.model.safetensors")
  let examples = packageRoot + "/datasets/shapes/examples"
  let sample = packageRoot + "/datasets/shapes/sample"

  func testChooseTakesTheHighestScoreFirstOnTies() {
    // steps: words plus <end>; logprob / steps: a −1, b −1.5, c −0.5 (cut: no <end>)
    let a = DecodedCaption(tokens: [4], logprob: -2, endedWithEnd: true)
    let b = DecodedCaption(tokens: [5, 6], logprob: -4.5, endedWithEnd: true)
    let c = DecodedCaption(tokens: [7], logprob: -0.5, endedWithEnd: false)
    let cosines = [0.5, 0.9, -0.5]
    // λ 0: a −1, b −1.5, c −0.5 → c; λ 1: a −0.5, b −0.6, c −1 → a; λ 4: a 1, b 2.1, c −2.5 → b
    XCTAssertEqual(Reranker.choose([a, b, c], cosines: cosines, weight: 0).tokens, [7])
    XCTAssertEqual(Reranker.choose([a, b, c], cosines: cosines, weight: 1).tokens, [4])
    let chosen = Reranker.choose([a, b, c], cosines: cosines, weight: 4)
    XCTAssertEqual(chosen.tokens, [5, 6])
    XCTAssertEqual(chosen.rerank!.cosine, 0.9)
    XCTAssertEqual(chosen.rerank!.score, -1.5 + 4 * 0.9, accuracy: 1e-12)
    XCTAssertEqual(chosen.logprob, -4.5)
    // a tie (−1.5 + 1 = −1 + 0.5) keeps the first in the beam's order
    XCTAssertEqual(Reranker.choose([b, a], cosines: [1, 0.5], weight: 1).tokens, [5, 6])
    XCTAssertEqual(Reranker.choose([a, b], cosines: [0.5, 1], weight: 1).tokens, [4])
    XCTAssertEqual(Reranker.choose([a, a], cosines: [0.25, 0.25], weight: 2).rerank!.score, -0.5)
    XCTAssertEqual(Reranker.choose([], cosines: [], weight: 1).tokens, [])
  }

  func testRerankFollowsTheFormulaWithCosinesFromTheJointSpace() throws {
    let space = try JointSpace(modelPath: joint)
    let captioner = space.captioner
    let paths = (0..<4).map { String(format: "%@/%06d.png", examples, $0) }
    let images = try paths.map { try captioner.load(path: $0) }
    let v = captioner.encode(images).clone()
    let n = 5
    var options = DecodingOptions(maxLength: 8, beamSize: n)
    let candidates = CaptionDecoder.beamCandidates(model: captioner.model, imageVectors: v, options: options)
    XCTAssertEqual(candidates.count, 4)
    let reranker = try XCTUnwrap(captioner.reranker)
    let batched = reranker.cosines(imageVectors: v, candidates: candidates)
    var independent: [[Double]] = []
    for (i, list) in candidates.enumerated() {
      XCTAssertTrue((1...n).contains(list.count), "\(list.count) candidates")
      // the plain-logprob best candidate is beam search's caption
      let dv = v.shape[1]
      let row = Tensor(shape: [1, dv], values: Array(v.buffer[i * dv..<(i + 1) * dv]))
      let plainBest = CaptionDecoder.beamSearch(model: captioner.model, imageVectors: row, options: options)[
        0]
      XCTAssertEqual(list.max { $0.logprob < $1.logprob }!.logprob, plainBest.logprob, accuracy: 1e-9)
      // each caption's cosine through the joint space alone: the image's unit vector, the sentence's
      let u = space.imageVectors([images[i]]).array
      independent.append(
        list.map { caption in
          let words = caption.tokens.isEmpty ? [Vocabulary.pad] : caption.tokens
          let s = space.retrieval.sentences.forward(
            tokens: words, steps: words.count, lengths: [caption.tokens.count]
          ).array
          return zip(u, s).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        })
      for (x, y) in zip(batched[i], independent[i]) { XCTAssertEqual(x, y, accuracy: 1e-5) }
    }
    options.rerank = n
    // λ 0: beam search's best by logprob / steps (α 1, which stops early but exactly)
    options.rerankWeight = 0
    var normalised = DecodingOptions(maxLength: 8, beamSize: n, lengthPenaltyAlpha: 1)
    let zero = reranker.decode(model: captioner.model, imageVectors: v, options: options)
    let beam = CaptionDecoder.beamSearch(model: captioner.model, imageVectors: v, options: normalised)
    XCTAssertEqual(zero.map(\.tokens), beam.map(\.tokens))
    // a huge λ: the highest cosine; λ 1: the highest score written out here
    for weight in [1e6, 1.0] {
      options.rerankWeight = weight
      let chosen = reranker.decode(model: captioner.model, imageVectors: v, options: options)
      for i in 0..<4 {
        let scores = zip(candidates[i], independent[i]).map {
          weight == 1e6 ? $1 : $0.logprob / Double($0.steps) + $1
        }
        let best = scores.indices.max { scores[$0] < scores[$1] }!
        XCTAssertEqual(chosen[i].tokens, candidates[i][best].tokens, "λ \(weight), image \(i)")
        XCTAssertEqual(chosen[i].rerank!.cosine, independent[i][best], accuracy: 1e-5)
      }
    }
    normalised.rerank = 2
    XCTAssertThrowsError(try normalised.validate())  // beam 5, rerank 2
  }

  func testCalibrationPicksTheSmallestWeightWithTheBestCIDEr() throws {
    let vocabulary = try Vocabulary(words: Vocabulary.specials + ["a", "red", "blue", "circle", "square"])
    func caption(_ words: [String], _ logprob: Double) -> DecodedCaption {
      DecodedCaption(tokens: words.map { vocabulary.id($0) }, logprob: logprob, endedWithEnd: true)
    }
    // image 0 is a red circle, image 1 a blue square; the likelier caption is wrong for both, the
    // cosine favours the right one: λ must outweigh a log-probability gap of 0.25 per step over
    // cosine gaps of 0.4, i.e. λ > 0.625, so 1 is the smallest of the grid that wins
    let references: [Int: [[String]]] = [
      10: [["a", "red", "circle"], ["a", "red", "circle"]],
      11: [["a", "blue", "square"], ["a", "blue", "square"]],
    ]
    let candidates = [
      [caption(["a", "blue", "circle"], -1), caption(["a", "red", "circle"], -2)],
      [caption(["a", "red", "square"], -1), caption(["a", "blue", "square"], -2)],
    ]
    let cosines = [[0.3, 0.7], [0.2, 0.6]]
    let calibration = RerankCalibration.choose(
      candidates: candidates, cosines: cosines, imageIds: [10, 11], references: references,
      vocabulary: vocabulary)
    XCTAssertEqual(calibration.weight, 1)
    XCTAssertEqual(calibration.scores.map(\.weight), Reranker.calibrationWeights)
    XCTAssertEqual(calibration.scores[0].ciderD, calibration.scores[1].ciderD)
    XCTAssertGreaterThan(calibration.scores[2].ciderD, calibration.scores[1].ciderD)
    XCTAssertEqual(calibration.images, 2)
  }

  func testDescribeAndEvaluateRerankAndTheirBadInputs() throws {
    let image = examples + "/000001.png"
    // usage errors (exit 64): --sample, a different --beam, 0, λ without --rerank, a negative λ
    for arguments in [
      ["--rerank", "3", "--sample"], ["--rerank", "3", "--beam", "5"], ["--rerank", "0"],
      ["--rerank-weight", "1"], ["--rerank", "3", "--rerank-weight", "-1"],
      ["--rerank", "3", "--rerank-weight", "nan"], ["--rerank", "101"],
    ] {
      let run = try runCaption(["describe", "--model", joint, image] + arguments)
      XCTAssertEqual(run.status, 64, "\(arguments): \(run.stderr)")
      XCTAssertTrue(run.stderr.contains("--rerank"), run.stderr)
    }
    let evaluateUsage = try runCaption([
      "evaluate", "--model", joint, "--data", sample, "--rerank", "2", "--beam", "3",
    ])
    XCTAssertEqual(evaluateUsage.status, 64, evaluateUsage.stderr)
    // a model without the retrieval part, and one without a calibrated λ: one line, exit 1
    for (model, reason) in [
      (plain, "the model has no retrieval part"), (joint, "the model has no calibrated rerank_weight"),
    ] {
      let run = try runCaption(["describe", "--model", model, image, "--rerank", "3"])
      XCTAssertEqual(run.status, 1, run.stderr)
      XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
      XCTAssertTrue(run.stderr.hasPrefix("caption: \(model): " + reason), run.stderr)
      XCTAssertEqual(run.stdout, "")
    }
    // --json: the SPEC keys in order, the values the library's
    let run = try runCaption([
      "describe", "--model", joint, image, "--rerank", "4", "--rerank-weight", "2", "--json",
    ])
    XCTAssertEqual(run.status, 0, run.stderr)
    let line = run.stdout.trimmingCharacters(in: .newlines)
    let keys = [
      "\"image\"", "\"caption\"", "\"tokens\"", "\"logprob\"", "\"cosine\"", "\"rerank_score\"",
      "\"familiar\"",
    ]
    let positions = keys.map { line.range(of: $0)?.lowerBound }
    XCTAssertFalse(positions.contains(nil), line)
    XCTAssertEqual(positions.map { $0! }, positions.map { $0! }.sorted(), line)
    let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
    let captioner = try Captioner(modelPath: joint)
    var options = DecodingOptions(beamSize: 4)
    options.rerank = 4
    options.rerankWeight = 2
    let expected = DescribeRun.decode(
      model: captioner.model, imageVectors: captioner.encode([try captioner.load(path: image)]),
      options: options,
      reranker: captioner.reranker)[0]
    XCTAssertEqual(object["caption"] as? String, captioner.words(expected).joined(separator: " "))
    // (the process and the test may sum in another order: the last bits may differ)
    XCTAssertEqual((object["logprob"] as! NSNumber).doubleValue, expected.logprob, accuracy: 1e-9)
    XCTAssertEqual((object["cosine"] as! NSNumber).doubleValue, expected.rerank!.cosine, accuracy: 1e-9)
    XCTAssertEqual((object["rerank_score"] as! NSNumber).doubleValue, expected.rerank!.score, accuracy: 1e-9)
    // plain output: the caption alone; without --rerank, no rerank keys
    let bare = try runCaption(["describe", "--model", joint, image, "--rerank", "4", "--rerank-weight", "2"])
    XCTAssertEqual(bare.stdout, captioner.words(expected).joined(separator: " ") + "\n")
    let unranked = try runCaption(["describe", "--model", joint, image, "--json"])
    XCTAssertFalse(unranked.stdout.contains("rerank_score"), unranked.stdout)
    // evaluate takes the same flags
    let evaluate = try runCaption([
      "evaluate", "--model", joint, "--data", sample, "--limit", "6", "--rerank", "3", "--rerank-weight", "1",
    ])
    XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
    XCTAssertTrue(
      evaluate.stdout.hasPrefix("6 images of the test split, beam 3, reranked with λ 1.0"), evaluate.stdout)
  }

  func testCalibrateStoresOnlyTheWeight() throws {
    let out = temporaryFolder() + "/reranked.safetensors"
    let run = try runCaption([
      "calibrate", "--model", joint, "--out", out, "--rerank-data", sample, "--split", "test", "--limit",
      "12",
      "--rerank", "3",
    ])
    XCTAssertEqual(run.status, 0, run.stderr)
    XCTAssertTrue(run.stdout.hasPrefix("rerank_weight "), run.stdout)
    XCTAssertTrue(run.stdout.hasSuffix(" from 12 images\n"), run.stdout)
    XCTAssertEqual(
      run.stderr.split(separator: "\n").filter { $0.hasPrefix("caption: λ ") }.count, 6, run.stderr)
    let before = try ModelFile.load(path: joint)
    let after = try ModelFile.load(path: out)
    let weight = try XCTUnwrap(after.config.retrieval?.rerankWeight)
    XCTAssertTrue(Reranker.calibrationWeights.contains(Double(weight)), "\(weight)")
    // every tensor bitwise, every other key as it was
    XCTAssertEqual(Set(after.tensors.keys), Set(before.tensors.keys))
    for (name, tensor) in before.tensors {
      XCTAssertEqual(after.tensors[name]!.array.map(\.bitPattern), tensor.array.map(\.bitPattern), name)
    }
    var config = after.config
    config.retrieval?.rerankWeight = nil
    XCTAssertEqual(config, before.config)
    XCTAssertEqual(after.vocabulary.words, before.vocabulary.words)
    XCTAssertEqual(after.mean, before.mean)
    XCTAssertEqual(after.std, before.std)
    XCTAssertEqual(after.provenance, before.provenance)
    // the calibrated λ is describe's default
    let image = examples + "/000002.png"
    let byDefault = try runCaption(["describe", "--model", out, image, "--rerank", "3", "--json"])
    let given = try runCaption([
      "describe", "--model", out, image, "--rerank", "3", "--json", "--rerank-weight", "\(weight)",
    ])
    XCTAssertEqual(byDefault.status, 0, byDefault.stderr)
    XCTAssertEqual(byDefault.stdout, given.stdout)
    // no retrieval part; nothing to calibrate
    let none = try runCaption([
      "calibrate", "--model", plain, "--out", out, "--rerank-data", sample, "--split", "test",
    ])
    XCTAssertEqual(none.status, 1)
    XCTAssertTrue(none.stderr.contains("the model has no retrieval part"), none.stderr)
    XCTAssertEqual(try runCaption(["calibrate", "--model", joint, "--out", out]).status, 64)
  }

  /// One epoch of the tiny training set with a tiny retrieval part.
  func tinyJointOptions(out: String) -> TrainOptions {
    var options = TrainerTests.tinyOptions(out: out)
    options.epochs = 1
    options.retrieval = 1
    options.retrievalEmbed = 4
    options.retrievalHidden = 4
    options.retrievalDim = 4
    return options
  }

  func testTrainingWithTheRetrievalPartCalibratesTheWeight() throws {
    let out = temporaryFolder() + "/joint.safetensors"
    _ = try Trainer(options: tinyJointOptions(out: out), log: { _ in }).run(resume: false)
    let files = TrainingFiles(out: out)
    let best = try ModelFile.load(path: files.best)
    let weight = try XCTUnwrap(best.config.retrieval?.rerankWeight)
    XCTAssertTrue(Reranker.calibrationWeights.contains(Double(weight)), "\(weight)")
    let logged = try String(contentsOfFile: files.log, encoding: .utf8).split(separator: "\n").compactMap {
      ((try JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any])?["val_rerank_weight"]
        as? NSNumber
    }
    XCTAssertEqual(logged.map(\.doubleValue), [Double(weight)])
  }

  func testRetrievalOnlyKeepsTheCaptionerAndTrainsOnlyTheRankingLoss() throws {
    let folder = temporaryFolder()
    let options = tinyJointOptions(out: folder + "/joint.safetensors")
    _ = try Trainer(options: options, log: { _ in }).run(resume: false)
    let joint = try ModelFile.load(path: TrainingFiles(out: options.out).latest)

    var only = TrainerTests.tinyOptions(out: folder + "/only.safetensors")
    only.initModel = TrainingFiles(out: options.out).latest
    only.epochs = 1
    only.retrieval = 1
    only.retrievalOnly = true
    _ = try Trainer(options: only, log: { _ in }).run(resume: false)
    let trained = try ModelFile.load(path: TrainingFiles(out: only.out).latest)
    XCTAssertEqual(Set(trained.tensors.keys), Set(joint.tensors.keys))
    var retrievalChanged = false
    for (name, tensor) in joint.tensors {
      let after = try XCTUnwrap(trained.tensors[name]).array
      if name.hasPrefix("retrieval.") {
        retrievalChanged = retrievalChanged || after != tensor.array
      } else {
        XCTAssertEqual(after, tensor.array, "\(name) changed")
      }
    }
    XCTAssertTrue(retrievalChanged, "no retrieval tensor trained")
    // the terms that train only the captioner are off; the ranking loss and the caption loss are logged
    let lines = try String(contentsOfFile: TrainingFiles(out: only.out).log, encoding: .utf8)
      .split(separator: "\n").map {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
      }
    let training = lines.filter { $0["val_loss"] == nil }
    XCTAssertFalse(training.isEmpty)
    for line in training {
      XCTAssertNotNil(line["retrieval_loss"])
      XCTAssertNotNil(line["loss"])
      for off in ["word_loss", "scene_loss", "mention_loss"] { XCTAssertNil(line[off], off) }
    }
  }

  func testGenerativeScoresAreTheDecodersLogprobPerStep() throws {
    let captioner = try Captioner(modelPath: joint)
    let images = try (0..<3).map { try captioner.load(path: String(format: "%@/%06d.png", examples, $0)) }
    let v = captioner.encode(images).clone()
    let candidates = CaptionDecoder.beamCandidates(
      model: captioner.model, imageVectors: v, options: DecodingOptions(maxLength: 20, beamSize: 8))
    let captions = candidates.flatMap { $0 }.filter(\.endedWithEnd)
    XCTAssertGreaterThanOrEqual(captions.count, 2)
    let scores = GenerativeRanker.scores(
      model: captioner.model, imageVectors: v, captions: captions.map(\.tokens),
      pairs: { $0 == 2 ? 0..<0 : 0..<captions.count })
    // image i's own candidates: teacher forcing gives the beam's log-probability back
    var m = 0
    var compared = 0
    for (i, list) in candidates.enumerated() {
      for caption in list where caption.endedWithEnd {
        if i < 2 {
          XCTAssertEqual(
            Double(scores[i * captions.count + m]), caption.logprob / Double(caption.steps), accuracy: 1e-4)
          compared += 1
        }
        m += 1
      }
    }
    XCTAssertGreaterThan(compared, 0)
    // pairs left out stay −∞
    XCTAssertTrue(scores[(2 * captions.count)...].allSatisfy { $0 == -.infinity })
  }

  func testEvaluateRetrievalWithTheGenerativeRanker() throws {
    let base = [
      "evaluate", "--model", joint, "--data", sample, "--limit", "6", "--beam", "1", "--json", "--retrieval",
    ]
    let embedding = try runCaption(base + ["--retrieval-fold", "3"])
    let generative = try runCaption(base + ["--ranker", "generative", "--retrieval-fold", "3"])
    XCTAssertEqual(embedding.status, 0, embedding.stderr)
    XCTAssertEqual(generative.status, 0, generative.stderr)
    let a = try JSONSerialization.jsonObject(with: Data(embedding.stdout.utf8)) as! [String: Double]
    let b = try JSONSerialization.jsonObject(with: Data(generative.stdout.utf8)) as! [String: Double]
    XCTAssertEqual(Set(a.keys), Set(b.keys))
    for key in ["i2t-R@1", "t2i-R@10", "rsum"] { XCTAssertNotNil(b[key], key) }
    // folds of 3 images: every caption's image is among the fold's top 10
    XCTAssertEqual(b["t2i-R@10"], 1)
    for bad in [["--ranker", "generative"], ["--retrieval-fold", "0"], ["--ranker", "other"]] {
      let run = try runCaption(["evaluate", "--model", joint, "--data", sample] + bad)
      XCTAssertEqual(run.status, 64, "\(bad): \(run.stderr)")
    }
  }
}
