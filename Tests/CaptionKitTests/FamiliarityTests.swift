import Foundation
import XCTest

@testable import CaptionKit

/// The familiarity score (SPEC §3c): its statistics and threshold against a Double reference, the
/// model file with and without it, `caption calibrate`, and `describe`'s verdicts on the bundled
/// model (shapes familiar, real photographs not).
final class FamiliarityTests: XCTestCase {
  let examples = packageRoot + "/datasets/shapes/examples"
  let photos = ["exif/Landscape_1.jpg", "exif/Portrait_6.jpg", "jpeg/testorig.jpg", "jpeg/testimgfst100.jpg"]
    .map {
      fixturePath("corpus/" + $0)
    }

  func testScoresAndThresholdMatchTheDefinition() {
    // 300 rows of 6 dimensions: 0 and 1 move together, 2...4 independent, 5 never varies
    let (rows, dv) = (300, 6)
    var generator = SeededGenerator(seed: 3)
    var values = [Float](repeating: 0, count: rows * dv)
    for r in 0..<rows {
      let shared = Float.random(in: -1...1, using: &generator)
      values[r * dv + 0] = shared
      values[r * dv + 1] = 2 * shared + 0.05 * Float.random(in: -1...1, using: &generator)
      for i in 2..<5 {
        values[r * dv + i] = Float(i) + Float(i) * Float.random(in: -1...1, using: &generator)
      }
      values[r * dv + 5] = 0.5
    }
    let vectors = Tensor(shape: [rows, dv], values: values)
    let familiarity = Familiarity.calibrate(vectors: vectors)
    // the reference: score = (v − μ)ᵀ (Σ + δI)⁻¹ (v − μ) / Dv, solved by Gaussian elimination in Double
    let mean = (0..<dv).map { i in (0..<rows).map { Double(values[$0 * dv + i]) }.reduce(0, +) / Double(rows)
    }
    var sigma = [[Double]](repeating: [Double](repeating: 0, count: dv), count: dv)
    for r in 0..<rows {
      for i in 0..<dv {
        for j in 0..<dv {
          sigma[i][j] +=
            (Double(values[r * dv + i]) - mean[i]) * (Double(values[r * dv + j]) - mean[j]) / Double(rows - 1)
        }
      }
    }
    let delta = Familiarity.shrinkage * (0..<dv).map { sigma[$0][$0] }.reduce(0, +) / Double(dv)
    for i in 0..<dv { sigma[i][i] += delta }
    func referenceScore(_ v: [Double]) -> Double {
      var a = sigma
      var x = zip(v, mean).map { $0 - $1 }
      let centred = x
      for k in 0..<dv {
        for i in (k + 1)..<dv {
          let f = a[i][k] / a[k][k]
          for j in k..<dv { a[i][j] -= f * a[k][j] }
          x[i] -= f * x[k]
        }
      }
      for i in stride(from: dv - 1, through: 0, by: -1) {
        x[i] = (x[i] - ((i + 1)..<dv).reduce(0) { $0 + a[i][$1] * x[$1] }) / a[i][i]
      }
      return zip(centred, x).map { $0 * $1 }.reduce(0, +) / Double(dv)
    }
    for i in 0..<dv { XCTAssertEqual(Double(familiarity.mean[i]), mean[i], accuracy: 1e-5) }
    let scores = familiarity.scores(vectors)
    for r in [0, 17, 299] {
      let reference = referenceScore((0..<dv).map { Double(values[r * dv + $0]) })
      XCTAssertEqual(Double(scores[r]), reference, accuracy: 1e-3 * reference)
    }
    // the threshold: margin × the 99th percentile of held-out scores (each half by the other's
    // statistics; 300 scores, index ⌈0.99 · 299⌉ = 297)
    func half(_ parity: Int) -> Tensor {
      Tensor(
        shape: [rows / 2, dv],
        values: stride(from: parity, to: rows, by: 2).flatMap { r in values[(r * dv)..<(r * dv + dv)] })
    }
    let heldOut =
      Familiarity.statistics(half(1)).scores(half(0)) + Familiarity.statistics(half(0)).scores(half(1))
    XCTAssertEqual(familiarity.threshold, Familiarity.margin * heldOut.sorted()[297])
    XCTAssertGreaterThan(familiarity.verdicts(vectors).filter { $0 }.count, 290)
    // each value within its dimension's range, but 0 and 1 apart: unfamiliar; so is a row that
    // switches the constant unit on, or one far outside
    let odd = Tensor(
      shape: [3, dv], values: [0.8, -1.6, 2, 3, 4, 0.5, 0, 0, 2, 3, 4, 1.5, 40, 80, 60, 70, 80, 0.5])
    XCTAssertEqual(familiarity.verdicts(odd), [false, false, false])
    let oddScores = familiarity.scores(odd)
    XCTAssertEqual(
      Double(oddScores[0]), referenceScore([0.8, -1.6, 2, 3, 4, 0.5]), accuracy: 1e-3 * Double(oddScores[0]))
    // a typical row stays familiar
    XCTAssertEqual(familiarity.verdicts(Tensor(shape: [1, dv], values: [0.5, 1, 2, 3, 4, 0.5])), [true])
  }

  func testBlockMeansAreEachPoolsAndTheLastConvsChannelMeans() {
    for layers: [EncoderLayer] in [
      [.conv(3), .maxPool, .conv(4), .maxPool, .conv(5)], [.conv(2), .conv(3), .maxPool, .conv(4), .maxPool],
    ] {
      let config = ModelConfig(imageSize: 13, layers: layers, dv: 6, vocabSize: 10, pool: .flatten)
      let encoder = Encoder(config: config)
      var generator = SeededGenerator(seed: 5)
      encoder.initialize(using: &generator)
      let batch = 3
      let images = Tensor(
        shape: [batch, 3, 13, 13],
        values: (0..<(batch * 3 * 169)).map { _ in Float.random(in: -1...1, using: &generator) })
      _ = encoder.features(images, keepActivations: false)
      let inference = encoder.blockMeans.clone()
      _ = encoder.features(images, keepActivations: true)
      XCTAssertEqual(encoder.blockMeans.array, inference.array, "\(layers)")
      // the reference: the stages one by one, each pool's output (and the last conv's) averaged in Double
      var x = images
      var expected: [[Double]] = Array(repeating: [], count: batch)
      for (index, stage) in encoder.stages.enumerated() {
        var isPool = false
        switch stage {
        case .conv(let conv): x = conv.forward(x).clone()
        case .maxPool(let pool):
          x = pool.forward(x).clone()
          isPool = true
        }
        guard isPool || index == encoder.stages.count - 1 else { continue }
        let (channels, positions) = (x.shape[1], x.shape[2] * x.shape[3])
        for b in 0..<batch {
          for c in 0..<channels {
            let start = (b * channels + c) * positions
            expected[b].append(
              x.array[start..<(start + positions)].reduce(0.0) { $0 + Double($1) } / Double(positions))
          }
        }
      }
      XCTAssertEqual(encoder.blockMeans.shape, [batch, config.blockMeansWidth])
      XCTAssertEqual(config.blockMeansWidth, expected[0].count)
      for (got, want) in zip(encoder.blockMeans.array, expected.flatMap { $0 }) {
        XCTAssertEqual(Double(got), want, accuracy: 1e-5 * max(1, abs(want)))
      }
    }
    // the default layers: the four pools' channels
    XCTAssertEqual(
      ModelConfig(
        layers: [
          .conv(16), .conv(16), .maxPool, .conv(32), .conv(32), .maxPool, .conv(64), .conv(64), .maxPool,
          .conv(128), .maxPool,
        ],
        vocabSize: 10
      ).blockMeansWidth, 240)
  }

  func testBlockMeansAndScoresMatchPyTorch() throws {
    // scripts/make_familiarity_fixture.py: float64 references, a model ending in a conv and one in a pool
    for name in ["conv_last", "pool_last"] {
      let captioner = try Captioner(modelPath: fixturePath("parity/familiarity_\(name).model.safetensors"))
      let expected = try Safetensors.read(
        path: fixturePath("parity/familiarity_\(name).expected.safetensors")
      )
      .tensors
      let familiarity = try XCTUnwrap(Familiarity(file: captioner.modelFile))
      XCTAssertEqual(familiarity.features, .blockMeans)
      let vectors = captioner.model.encode(expected["batch.images"]!)
      let means = captioner.model.encoder.blockMeans
      XCTAssertLessThan(
        relativeL2Error(means.array, expected["expected.block_means"]!.array.map(Double.init)), 1e-4, name)
      XCTAssertLessThan(
        relativeL2Error(familiarity.scores(means), expected["expected.scores"]!.array.map(Double.init)), 1e-4,
        name)
      XCTAssertEqual(
        familiarity.verdicts(imageVectors: vectors, encoder: captioner.model.encoder),
        expected["expected.scores"]!.array.map { $0 <= familiarity.threshold })
    }
  }

  func testAFileCalibratedOnImageVectorsStillScoresThem() throws {
    let plain = fixturePath("parity/lstm.model.safetensors")
    let captioner = try Captioner(modelPath: plain)
    let paths = (0..<6).map { String(format: "%@/%06d.png", examples, $0) }
    let vectors = captioner.encode(try paths.map { try captioner.load(path: $0) })
    var file = try ModelFile.load(path: plain)
    Familiarity.calibrate(vectors: vectors, features: .imageVector).store(in: &file)
    file.config.familiarFeatures = nil  // as the first calibrated files were written
    let out = temporaryFolder() + "/by-v.safetensors"
    try file.save(path: out)
    let loaded = try ModelFile.load(path: out)
    XCTAssertNil(loaded.config.familiarFeatures)
    let familiarity = try XCTUnwrap(Familiarity(file: loaded))
    XCTAssertEqual(familiarity.features, .imageVector)
    XCTAssertEqual(familiarity.mean.count, file.config.dv)
    let run = try runCaption(["describe", "--json", "--model", out, paths[2]])
    XCTAssertEqual(run.status, 0, run.stderr)
    XCTAssertTrue(run.stdout.hasSuffix(", \"familiar\": true}\n"), run.stdout)
    // block-means tensors in a file that says image_vector are a defect the model's check names
    var wrong = file
    Familiarity.calibrate(vectors: captioner.model.encoder.blockMeans, features: .blockMeans).store(
      in: &wrong)
    wrong.config.familiarFeatures = .imageVector
    XCTAssertThrowsError(try wrong.save(path: temporaryFolder() + "/wrong.safetensors")) { error in
      XCTAssertTrue("\(error)".contains("familiarity.mean"), "\(error)")
    }
  }

  func testDescribeReportsNullWithoutCalibrationAndCalibrateKeepsTheRest() throws {
    let plain = fixturePath("parity/lstm.model.safetensors")
    let run = try runCaption(["describe", "--json", "--model", plain, examples + "/000000.png"])
    XCTAssertEqual(run.status, 0, run.stderr)
    XCTAssertTrue(run.stdout.hasSuffix(", \"familiar\": null}\n"), run.stdout)
    let plainRun = try runCaption(["describe", "--model", plain, photos[0]])
    XCTAssertEqual(plainRun.status, 0)
    XCTAssertEqual(plainRun.stderr, "")

    let out = temporaryFolder() + "/calibrated.safetensors"
    let calibrate = try runCaption([
      "calibrate", "--model", plain, "--out", out, examples, photos[0] + ".missing",
    ])
    XCTAssertEqual(calibrate.status, 0, calibrate.stderr)
    XCTAssertTrue(calibrate.stdout.hasPrefix("familiar_threshold "), calibrate.stdout)
    XCTAssertTrue(calibrate.stdout.hasSuffix(" from 6 images\n"), calibrate.stdout)
    XCTAssertTrue(calibrate.stderr.contains("1 of 7 images could not be read"), calibrate.stderr)
    let before = try ModelFile.load(path: plain)
    let after = try ModelFile.load(path: out)
    XCTAssertNotNil(Familiarity(file: after))
    XCTAssertNil(Familiarity(file: before))
    XCTAssertEqual(after.tensors.count, before.tensors.count + 2)
    for (name, tensor) in before.tensors { XCTAssertEqual(after.tensors[name]!.array, tensor.array, name) }
    XCTAssertEqual(after.config.familiarFeatures, .blockMeans)
    XCTAssertEqual(after.tensors[Familiarity.meanName]?.shape, [before.config.blockMeansWidth])
    var config = after.config
    config.familiarThreshold = nil
    config.familiarFeatures = nil
    XCTAssertEqual(config, before.config)
    // the calibration images themselves are familiar (the threshold is above all their scores)
    let again = try runCaption(["describe", "--json", "--model", out, examples + "/000003.png"])
    XCTAssertTrue(again.stdout.hasSuffix(", \"familiar\": true}\n"), again.stdout)
    // too few images: one line, exit 1
    let few = try runCaption(["calibrate", "--model", plain, "--out", out, examples + "/000000.png"])
    XCTAssertEqual(few.status, 1)
    XCTAssertEqual(few.stderr.split(separator: "\n").count, 1, few.stderr)
  }

  func testBundledModelFlagsPhotographsButNotShapes() throws {
    let model = packageRoot + "/models/shapes.safetensors"
    let shapes = try runCaption(["describe", "--json", "--model", model, examples])
    XCTAssertEqual(shapes.status, 0, shapes.stderr)
    let shapeLines = shapes.stdout.split(separator: "\n")
    XCTAssertEqual(shapeLines.count, 6)
    for line in shapeLines { XCTAssertTrue(line.hasSuffix(", \"familiar\": true}"), String(line)) }
    let real = try runCaption(["describe", "--json", "--model", model] + photos)
    XCTAssertEqual(real.status, 0, real.stderr)
    for line in real.stdout.split(separator: "\n") {
      XCTAssertTrue(line.hasSuffix(", \"familiar\": false}"), String(line))
    }
    // plain output: the caption still printed, one note on stderr, exit status 0
    let note = try runCaption(["describe", "--model", model, photos[2]])
    XCTAssertEqual(note.status, 0)
    XCTAssertEqual(note.stdout.split(separator: "\n").count, 1)
    XCTAssertEqual(
      note.stderr,
      "caption: \(photos[2]): the image is unlike the model's training images; the caption may be wrong\n")
    let quiet = try runCaption(["describe", "--model", model, examples + "/000001.png"])
    XCTAssertEqual(quiet.stderr, "")
  }
}
