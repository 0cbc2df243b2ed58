import Foundation
import XCTest

@testable import CaptionKit

/// The memory estimate of a training configuration, and the refusal of one that cannot fit.
final class TrainingMemoryTests: XCTestCase {
  /// The small configuration of the hand count (vocabulary 10).
  func smallOptions() -> TrainOptions {
    var options = TrainOptions(data: "", out: "")
    options.imageSize = 8
    options.layers = [.conv(4), .maxPool, .conv(6)]
    options.pool = .flatten
    options.dv = 5
    options.embed = 3
    options.hidden = 2
    options.cell = .lstm
    options.rnnLayers = 2
    options.batchSize = 2
    options.captionsPerImage = 3
    options.maxLength = 4
    options.wordLoss = 1
    return options
  }

  /// A small configuration counted by hand from SPEC §3's tensors and the estimate's activations.
  func testTheEstimateMatchesAHandCount() {
    var options = smallOptions()
    let memory = TrainingMemory(config: options.modelConfig(vocabSize: 10), options: options)
    // conv0 4·3·9+4 = 112, conv1 6·4·9+6 = 222, fc 5·(6·4·4)+5 = 485, embed 10·3 = 30,
    // rnn.0 8·3+8·2+8·5+8+8 = 96, rnn.1 8·2+8·2+8·5+8+8 = 88, out 10·2+10 = 30,
    // word head 5·10+10 = 60.
    XCTAssertEqual(memory.parameters, 112 + 222 + 485 + 30 + 96 + 88 + 30 + 60)
    // B = 2, R = 6, T = 4. Encoder: images 2·3·64 = 384; conv0 2·(2·4·64) = 1024; pool
    // 2·(2·4·16) = 256; conv1 2·(2·6·16) = 384. Decoder: embedded 4·6·3 = 72; rnn.0
    // 24·(2·4·2 + 3·2 + 3) = 600; rnn.1 24·(16 + 6 + 2) = 576; logits 2·24·10 = 480.
    XCTAssertEqual(memory.activations, 384 + 1024 + 256 + 384 + 72 + 600 + 576 + 480)
    XCTAssertEqual(memory.bytes, 4 * (4 * 1123 + 3776))

    options.wordLoss = 0
    XCTAssertEqual(
      TrainingMemory(config: options.modelConfig(vocabSize: 10), options: options).parameters, 1063)
  }

  /// A conv that runs the max-pool after it inside (8 input channels, a 12-px map: F(4×4)) keeps
  /// only the pooled map, and the pool nothing; the same layers on an odd map (13 px) count both.
  func testAConvThatPoolsInsideCountsThePooledMapOnly() {
    var options = smallOptions()
    options.layers = [.conv(8), .conv(8), .maxPool]
    options.imageSize = 12
    let config = options.modelConfig(vocabSize: 10)
    XCTAssertEqual(Encoder(config: config).fusedPools, [2])
    let decoder = 72.0 + 600 + 576 + 480
    // images 2·3·144 = 864; conv0 2·(2·8·144) = 4608; conv1 pooled 2·(2·8·36) = 1152.
    XCTAssertEqual(TrainingMemory(config: config, options: options).activations, 864 + 4608 + 1152 + decoder)
    options.imageSize = 13
    // images 2·3·169 = 1014; conv0 and conv1 2·(2·8·169) = 5408 each; pool 2·(2·8·36) = 1152.
    XCTAssertEqual(
      TrainingMemory(config: options.modelConfig(vocabSize: 10), options: options).activations,
      1014 + 5408 + 5408 + 1152 + decoder)
  }

  func testAConfigurationThatCannotFitIsRefusedWithItsEstimate() throws {
    let options = smallOptions()
    let memory = TrainingMemory(config: options.modelConfig(vocabSize: 10), options: options)
    XCTAssertNoThrow(try memory.check(availableBytes: 33_072))
    XCTAssertNoThrow(try memory.check(availableBytes: nil))
    XCTAssertThrowsError(try memory.check(availableBytes: 33_071)) { error in
      let error = error as? CaptionError
      XCTAssertEqual(error?.kind, .tooLarge)
      XCTAssertTrue(error?.reason.hasPrefix("this configuration needs about 33.1 kB to train") ?? false)
      XCTAssertTrue(error?.reason.contains("more than the 33.1 kB of memory available") ?? false)
    }
  }

  func testAvailableMemoryComesFromMeminfoAndTheCgroupLimit() {
    let meminfo = "MemTotal:        2000 kB\nMemFree:          100 kB\nMemAvailable:    1500 kB\n"
    XCTAssertEqual(
      TrainingMemory.availableBytes(meminfo: meminfo, cgroupLimit: nil, cgroupUsage: nil), 1_536_000)
    XCTAssertEqual(
      TrainingMemory.availableBytes(meminfo: "MemTotal: 2000 kB\n", cgroupLimit: "max\n", cgroupUsage: "5\n"),
      2_048_000)
    XCTAssertEqual(
      TrainingMemory.availableBytes(meminfo: meminfo, cgroupLimit: "1000000\n", cgroupUsage: "400000\n"),
      600_000)
    XCTAssertNil(TrainingMemory.availableBytes(meminfo: nil, cgroupLimit: nil, cgroupUsage: nil))
    XCTAssertNotNil(TrainingMemory.availableBytes(), "this machine says how much memory it has")
  }

  func testTrainRefusesSizesThatCannotFitBeforeAllocating() throws {
    let out = temporaryFolder() + "/huge.safetensors"
    let run = try runCaption(
      [
        "train", "--data", TrainerTests.dataFolder, "--out", out, "--hidden", "30000", "--embed", "30000",
        "--dv", "30000", "--image-size", "16", "--layers", "4,M",
      ], timeout: 300)
    XCTAssertEqual(run.status, 1, run.stderr)
    let lines = run.stderr.split(separator: "\n")
    XCTAssertEqual(lines.count, 1, run.stderr)
    XCTAssertTrue(lines[0].hasPrefix("caption: train: this configuration needs about "), run.stderr)
    XCTAssertTrue(lines[0].contains(" GB to train"), run.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: out))
  }
}
