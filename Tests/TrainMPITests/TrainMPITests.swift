import Foundation
import XCTest

@testable import CaptionKit

/// `mpirun -np N caption train` on this machine (loopback, shared memory): the same weights as one
/// process, resumable across rank counts, and a rank that dies or hangs ends the run.
final class TrainMPITests: XCTestCase {
  /// 32 training images of 16×16: batches of 6 make 6 steps an epoch, the last of 2 images (a share
  /// of it is empty with 3 ranks).
  static let dataFolder: String = {
    let folder = NSTemporaryDirectory() + "caption-mpi-tests-\(getpid())/shapes"
    try! ShapesDataset.generate(
      outputFolder: folder, count: 40, seed: 3, imageSize: 16, format: .png, valFraction: 0.2,
      testFraction: 0, log: { _ in })
    return folder
  }()

  func folder(_ name: String) -> String {
    NSTemporaryDirectory() + "caption-mpi-tests-\(getpid())/" + name + "-\(UUID().uuidString.prefix(8))"
  }

  /// A tiny model, dropout off, every auxiliary loss on; 5 epochs = 30 steps.
  func trainArguments(out: String, epochs: Int = 5, seed: Int = 1, valImages: Int = 2) -> [String] {
    [
      "train", "--data", TrainMPITests.dataFolder, "--out", out, "--min-count", "1", "--image-size", "16",
      "--layers", "4,M,6", "--pool", "avg", "--dv", "8", "--embed", "6", "--hidden", "10", "--dropout", "0",
      "--epochs", String(epochs), "--batch-size", "6", "--threads", "1", "--workers", "1", "--val-images",
      String(valImages),
      "--seed", String(seed), "--clip", "1",
    ]
  }

  struct Run {
    var status: Int32
    var output: String
    var seconds: Double
  }

  /// Runs `caption ARGUMENTS` (under `mpirun -np ranks` when ranks > 0); `during` is called with the
  /// process once started. Killed (and failing the test) after `timeout` seconds.
  @discardableResult
  func run(
    ranks: Int, _ arguments: [String], mpirunArguments: [String]? = nil, timeout: Double = 60,
    environment extra: [String: String] = [:], during: ((Process) -> Void)? = nil,
    file: StaticString = #filePath, line: UInt = #line
  ) throws -> Run {
    let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let caption = folder.appendingPathComponent("caption").path
    let process = Process()
    if ranks > 0 {
      process.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
      process.arguments =
        ["--oversubscribe", "--mca", "btl", "self,vader"]
        + (mpirunArguments ?? ["-np", String(ranks), caption] + arguments)
    } else {
      process.executableURL = URL(fileURLWithPath: caption)
      process.arguments = arguments
    }
    var environment = ProcessInfo.processInfo.environment
    environment["OPENBLAS_NUM_THREADS"] = "1"
    environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    environment.merge(extra) { $1 }
    process.environment = environment
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("mpi-\(UUID().uuidString).txt")
    FileManager.default.createFile(atPath: output.path, contents: nil)
    let handle = try FileHandle(forWritingTo: output)
    process.standardOutput = handle
    process.standardError = handle
    let started = Date()
    try process.run()
    during?(process)
    while process.isRunning && Date().timeIntervalSince(started) < timeout { usleep(20_000) }
    if process.isRunning {
      process.terminate()
      XCTFail("still running after \(timeout) s", file: file, line: line)
    }
    process.waitUntilExit()
    try handle.close()
    let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
    try? FileManager.default.removeItem(at: output)
    return Run(status: process.terminationStatus, output: text, seconds: Date().timeIntervalSince(started))
  }

  /// The worst relative L2 difference over the tensors of two model files.
  func worstDifference(_ a: String, _ b: String) throws -> Double {
    let (x, y) = (try ModelFile.load(path: a).tensors, try ModelFile.load(path: b).tensors)
    XCTAssertEqual(Set(x.keys), Set(y.keys))
    var worst = 0.0
    // The familiarity calibration is not trained: a group saves rank 0's, made from the validation
    // images of its own batches (SPEC §8), so it differs from one process's by design.
    for (name, tensor) in x where !name.hasPrefix("familiarity.") {
      let other = try XCTUnwrap(y[name])
      var (difference, norm) = (0.0, 0.0)
      for i in 0..<tensor.count {
        let (p, q) = (Double(tensor[i]), Double(other[i]))
        difference += (p - q) * (p - q)
        norm += p * p
      }
      worst = max(worst, (difference / max(norm, 1e-300)).squareRoot())
    }
    return worst
  }

  /// The gradients' ring sum alone (`caption-train-mpi --check-sum`): every rank ends with the same
  /// bits, those of adding each chunk's values in ring order (chunk c: x_c + x_{c+1} + …), within
  /// rounding of the exact (Double) sum; with sizes that do not divide by N, smaller than N, empty,
  /// and several sums in flight together.
  func testRingSumAddsInAFixedOrderOnEveryRank() throws {
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
      .appendingPathComponent("caption-train-mpi").path
    var generator = SeededGenerator(seed: 5)
    for ranks in [2, 3] {
      for (count, parts) in [(0, 1), (1, 1), (2, 1), (7, 1), (1001, 3)] {
        let base = folder("sum")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        // Magnitudes from 1e-3 to 1e3, so that the order of the additions shows in the bits.
        let inputs = (0..<ranks).map { _ in
          (0..<count).map { _ in
            Float.random(in: -1...1, using: &generator)
              * powf(10, Float.random(in: -3...3, using: &generator))
          }
        }
        for (rank, values) in inputs.enumerated() {
          try values.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: base + "/in.\(rank)")) }
        }
        let summed = try run(
          ranks: ranks, [],
          mpirunArguments: ["-np", String(ranks), executable, "--check-sum", base, String(parts)])
        XCTAssertEqual(summed.status, 0, summed.output)

        // The reference: part by part, chunk c = ⌊c·n/N⌋ ..< ⌊(c+1)·n/N⌋ of the part adds the ranks
        // c, c+1, …, c−1 (mod N) in this order.
        var expected = [Float](repeating: 0, count: count)
        var exact = [Double](repeating: 0, count: count)
        for part in 0..<parts {
          let (start, n) = (part * count / parts, (part + 1) * count / parts - part * count / parts)
          for c in 0..<ranks {
            for i in (start + c * n / ranks)..<(start + (c + 1) * n / ranks) {
              expected[i] = inputs[c][i]
              for k in 1..<ranks { expected[i] += inputs[(c + k) % ranks][i] }
              exact[i] = inputs.reduce(0.0) { $0 + Double($1[i]) }
            }
          }
        }
        for rank in 0..<ranks {
          let data = try Data(contentsOf: URL(fileURLWithPath: base + "/out.\(rank)"))
          let got = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
          XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "\(ranks) ranks, \(count) values")
          let error = zip(got, exact).reduce(0.0) { $0 + (Double($1.0) - $1.1) * (Double($1.0) - $1.1) }
          let norm = exact.reduce(0.0) { $0 + $1 * $1 }
          XCTAssertLessThanOrEqual(error.squareRoot(), 1e-6 * norm.squareRoot(), "\(ranks) ranks")
        }
      }
    }
  }

  /// Also the validation: 8 images make two batches of 6 and 2, validated by different ranks; the
  /// lines the runs print after each epoch are the same.
  func testTwoAndThreeRanksGiveTheWeightsOfOneProcess() throws {
    let base = folder("equal")
    let single = try run(ranks: 0, trainArguments(out: base + "/1/m.safetensors", valImages: 8))
    XCTAssertEqual(single.status, 0, single.output)
    let validationLines = { (output: String) in
      output.split(separator: "\n").filter { $0.hasPrefix("epoch ") && $0.contains("val_CIDEr-D") }
    }
    XCTAssertEqual(validationLines(single.output).count, 5, single.output)
    // Buckets of 2 kB: the gradients are summed in several pieces while the backward pass runs.
    for (ranks, buckets) in [(2, "0"), (2, "0.002"), (3, "0.002")] {
      let out = base + "/\(ranks)/m.safetensors"
      try? FileManager.default.removeItem(atPath: base + "/\(ranks)")
      let parallel = try run(
        ranks: ranks, trainArguments(out: out, valImages: 8), environment: ["CAPTION_MPI_BUCKET_MB": buckets])
      XCTAssertEqual(parallel.status, 0, parallel.output)
      XCTAssertEqual(validationLines(parallel.output), validationLines(single.output), "\(ranks) ranks")
      XCTAssertTrue(parallel.output.contains("on \(ranks) ranks"), parallel.output)
      let difference = try worstDifference(
        base + "/1/m.latest.safetensors", base + "/\(ranks)/m.latest.safetensors")
      XCTAssertLessThan(difference, 1e-5, "\(ranks) ranks, buckets of \(buckets) MB")
      XCTAssertGreaterThan(
        difference, 0, "the runs differ in rounding only; equal files would mean one was not run")
      let log = try String(contentsOfFile: base + "/\(ranks)/m.log.jsonl", encoding: .utf8)
      XCTAssertTrue(log.contains("\"ranks\":\(ranks)") && log.contains("\"step\":30,"), log)
      let provenance = try ModelFile.load(path: out).provenance ?? ""
      XCTAssertTrue(provenance.contains("\"ranks\":\(ranks)"), provenance)
    }
  }

  /// With the retrieval part (`--retrieval 1`, the hardest negatives from the third epoch) the ranking
  /// loss is the whole batch's on every rank: the same weights and validation figures (R@K, λ) as
  /// one process, also where a rank's share of the last batch is empty.
  func testTheRankingLossOverRanksIsOneProcesssLoss() throws {
    let base = folder("retrieval")
    let retrieval = [
      "--retrieval", "1", "--retrieval-hidden", "6", "--retrieval-dim", "5", "--retrieval-hard-after", "2",
    ]
    let single = try run(ranks: 0, trainArguments(out: base + "/1/m.safetensors", valImages: 8) + retrieval)
    XCTAssertEqual(single.status, 0, single.output)
    let validationLines = { (output: String) in
      output.split(separator: "\n").filter { $0.hasPrefix("epoch ") && $0.contains("val_rsum") }
    }
    XCTAssertEqual(validationLines(single.output).count, 5, single.output)
    for ranks in [2, 3] {
      let out = base + "/\(ranks)/m.safetensors"
      let parallel = try run(ranks: ranks, trainArguments(out: out, valImages: 8) + retrieval)
      XCTAssertEqual(parallel.status, 0, parallel.output)
      XCTAssertEqual(validationLines(parallel.output), validationLines(single.output), "\(ranks) ranks")
      let difference = try worstDifference(
        base + "/1/m.latest.safetensors", base + "/\(ranks)/m.latest.safetensors")
      XCTAssertLessThan(difference, 1e-5, "\(ranks) ranks")
      XCTAssertGreaterThan(difference, 0, "the runs differ in rounding only")
      let log = try String(contentsOfFile: base + "/\(ranks)/m.log.jsonl", encoding: .utf8)
      XCTAssertTrue(log.contains("\"retrieval_loss\":"), log)
      let tensors = try ModelFile.load(path: out).tensors
      XCTAssertNotNil(tensors["retrieval.text_proj.weight"])
    }
  }

  func testResumeAcrossRankCountsContinuesExactly() throws {
    let base = folder("resume")
    XCTAssertEqual(try run(ranks: 0, trainArguments(out: base + "/whole/m.safetensors")).status, 0)
    let out = base + "/parts/m.safetensors"
    let first = try run(ranks: 2, trainArguments(out: out) + ["--max-steps", "10"])
    XCTAssertEqual(first.status, 0, first.output)
    let second = try run(
      ranks: 3, ["train", "--out", out, "--resume", "--max-steps", "20", "--threads", "1"])
    XCTAssertEqual(second.status, 0, second.output)
    let third = try run(ranks: 0, ["train", "--out", out, "--resume", "--threads", "1"])
    XCTAssertEqual(third.status, 0, third.output)
    let state = try Safetensors.read(path: base + "/parts/m.latest.state")
    XCTAssertEqual(state.metadata["step"], "30")
    XCTAssertLessThan(
      try worstDifference(base + "/whole/m.latest.safetensors", base + "/parts/m.latest.safetensors"), 1e-5)
  }

  /// The ranks' processes (caption-train-mpi) of the run writing `out`, in rank order.
  func rankProcesses(writing out: String) -> [pid_t] {
    // The run's folder name (unique; the options' JSON on the command line escapes slashes).
    let folder = URL(fileURLWithPath: out).deletingLastPathComponent().lastPathComponent
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { pid_t($0) }.sorted().filter { pid in
      guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
      let text = String(decoding: data, as: UTF8.self)
      return text.contains("caption-train-mpi") && text.contains(folder)
    }
  }

  /// Waits until the run has saved a checkpoint (its state exists), then `act`s on rank 1.
  func afterFirstCheckpoint(out: String, _ act: @escaping (pid_t) -> Void) -> (Process) -> Void {
    { _ in
      let state = TrainingFiles(out: out).state
      let deadline = Date(timeIntervalSinceNow: 30)
      while Date() < deadline && !FileManager.default.fileExists(atPath: state) { usleep(20_000) }
      let ranks = self.rankProcesses(writing: out)
      XCTAssertEqual(ranks.count, 2)
      if ranks.count == 2 { act(ranks[1]) }
    }
  }

  func testAKilledOrStoppedRankEndsTheRunAndTheCheckpointResumes() throws {
    for signal in [SIGKILL, SIGSTOP] {
      let out = folder("fault") + "/m.safetensors"
      let faulty = try run(
        ranks: 2, trainArguments(out: out, epochs: 100_000), timeout: 40,
        environment: ["CAPTION_MPI_TIMEOUT": "4"],
        during: afterFirstCheckpoint(out: out) { kill($0, signal) })
      XCTAssertNotEqual(faulty.status, 0, faulty.output)
      XCTAssertTrue(faulty.output.contains("rank 1"), faulty.output)
      if signal == SIGSTOP {
        XCTAssertTrue(faulty.output.contains("rank 1 did not answer within 4 s"), faulty.output)
      }
      let resumed = try run(
        ranks: 0, ["train", "--out", out, "--resume", "--max-steps", "1", "--threads", "1"])
      XCTAssertEqual(resumed.status, 0, resumed.output)
    }
  }

  func testSigtermSavesOnceAndExits130() throws {
    let out = folder("term") + "/m.safetensors"
    let stopped = try run(
      ranks: 2, trainArguments(out: out, epochs: 100_000),
      during: { _ in
        let state = TrainingFiles(out: out).state
        let deadline = Date(timeIntervalSinceNow: 30)
        while Date() < deadline && !FileManager.default.fileExists(atPath: state) { usleep(20_000) }
        for pid in self.rankProcesses(writing: out) { kill(pid, SIGTERM) }
      })
    XCTAssertEqual(stopped.status, 130, stopped.output)
    XCTAssertEqual(stopped.output.components(separatedBy: "interrupted: the latest state is saved").count, 2)
    let resumed = try run(
      ranks: 0, ["train", "--out", out, "--resume", "--max-steps", "1", "--threads", "1"])
    XCTAssertEqual(resumed.status, 0, resumed.output)
  }

  func testRanksStartedDifferentlyAreRefused() throws {
    let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let caption = folder.appendingPathComponent("caption").path
    let out = self.folder("differ") + "/m.safetensors"
    let refused = try run(
      ranks: 2, [],
      mpirunArguments: ["-np", "1", caption] + trainArguments(out: out, seed: 1) + [":", "-np", "1", caption]
        + trainArguments(out: out, seed: 2))
    XCTAssertNotEqual(refused.status, 0, refused.output)
    XCTAssertTrue(refused.output.contains("rank 1 was started with a different"), refused.output)
  }

  /// The same options and the same number of images, but two captions trade places in rank 1's
  /// data file (the same vocabulary): refused at start.
  func testRanksGivenDifferentDataAreRefused() throws {
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
      .appendingPathComponent("caption").path
    let base = folder("data")
    let (first, second) = (base + "/a", base + "/b")
    for copy in [first, second] {
      try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
      try FileManager.default.copyItem(atPath: TrainMPITests.dataFolder, toPath: copy + "/shapes")
    }
    let captions = URL(fileURLWithPath: second + "/shapes/captions.json")
    var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: captions)) as? [String: Any])
    var images = try XCTUnwrap(json["images"] as? [[String: Any]])
    let train = images.indices.filter { images[$0]["split"] as? String == "train" }
    let (i, j) = (train[0], train[1])
    (images[i]["sentences"], images[j]["sentences"]) = (images[j]["sentences"], images[i]["sentences"])
    json["images"] = images
    try JSONSerialization.data(withJSONObject: json).write(to: captions)

    var arguments = trainArguments(out: base + "/m.safetensors")
    arguments[arguments.firstIndex(of: "--data")! + 1] = "shapes"
    let refused = try run(
      ranks: 2, [],
      mpirunArguments: ["-np", "1", "-wdir", first, executable] + arguments + [
        ":", "-np", "1", "-wdir", second, executable,
      ] + arguments)
    XCTAssertNotEqual(refused.status, 0, refused.output)
    XCTAssertTrue(refused.output.contains("rank 1 was started with a different"), refused.output)
  }
}
