import CKernels
import Foundation
import XCTest

@testable import CaptionKit

/// The `caption` executable end to end: describe's outputs and exit statuses, usage errors (64),
/// bad files (1 and one line on stderr), train and evaluate on a tiny dataset.
final class CommandTests: XCTestCase {
  static let model: String = {
    let folder = temporaryFolder()
    var options = TrainerTests.tinyOptions(out: folder + "/tiny.safetensors")
    options.epochs = 1
    _ = try! Trainer(options: options, log: { _ in }).run(resume: false)
    return folder + "/tiny.safetensors"
  }()

  var image: String { TrainerTests.dataFolder + "/images/000000.png" }

  func testDescribeOneFileGivesTheBareCaption() throws {
    let run = try runCaption(["describe", "--model", CommandTests.model, image])
    XCTAssertEqual(run.status, 0, run.stderr)
    let lines = run.stdout.split(separator: "\n")
    XCTAssertEqual(lines.count, 1)
    XCTAssertFalse(lines[0].hasPrefix(image), "one file: the bare caption")
  }

  func testDescribeJSONAndAFailedImage() throws {
    let missing = temporaryFolder() + "/missing.png"
    let run = try runCaption(["describe", "--json", "--model", CommandTests.model, image, missing])
    XCTAssertEqual(run.status, 1, "an image failed")
    let lines = run.stdout.split(separator: "\n").map { String($0) }
    XCTAssertEqual(lines.count, 2)
    let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
    XCTAssertEqual(first["image"] as? String, image)
    XCTAssertNotNil(first["tokens"] as? [String])
    XCTAssertLessThan((first["logprob"] as? Double) ?? 1, 0)
    XCTAssertEqual(
      (first["tokens"] as? [String])?.joined(separator: " "), first["caption"] as? String)
    let second = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as! [String: Any]
    XCTAssertEqual(second["image"] as? String, missing)
    XCTAssertNotNil(second["error"] as? String)
    XCTAssertEqual(run.stderr.split(separator: "\n").count, 1)
    XCTAssertTrue(run.stderr.contains(missing))
  }

  func testDescribeReadsPathsFromStandardInput() throws {
    let second = TrainerTests.dataFolder + "/images/000001.png"
    let run = try runCaption(
      ["describe", "--model", CommandTests.model, "-"], stdin: image + "\n" + second + "\n")
    XCTAssertEqual(run.status, 0, run.stderr)
    let lines = run.stdout.split(separator: "\n")
    XCTAssertEqual(lines.count, 2)
    XCTAssertTrue(lines[0].hasPrefix(image + ": "))
    XCTAssertTrue(lines[1].hasPrefix(second + ": "))
  }

  /// A folder without images, or empty standard input: one line naming it, exit 1 (not silence).
  func testDescribeWithNothingToCaptionIsAnError() throws {
    let empty = temporaryFolder()
    _ = FileManager.default.createFile(atPath: empty + "/notes.txt", contents: Data([1]))
    let nothing: [(arguments: [String], stdin: String?, subject: String)] = [
      ([empty], nil, empty), (["-"], "", "-"), (["-"], "\n \n", "-"),
    ]
    for (arguments, stdin, subject) in nothing {
      let run = try runCaption(["describe", "--model", CommandTests.model] + arguments, stdin: stdin)
      XCTAssertEqual(run.status, 1, "\(arguments)")
      XCTAssertEqual(run.stdout, "")
      XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
      XCTAssertTrue(run.stderr.hasPrefix("caption: \(subject): no images found"), run.stderr)
    }
  }

  /// A describe's arguments read without ArgumentParser (`Describe.parsedDirectly`) run the command
  /// ArgumentParser would: for each command line, in the plain forms that path reads and in the
  /// ones it leaves to ArgumentParser, the same standard output, standard error and exit status as
  /// with `CAPTION_FULL_PARSE` set, which sends every command line through ArgumentParser.
  func testDescribeArgumentsReadDirectlyRunWhatArgumentParserWould() throws {
    let model = packageRoot + "/models/shapes.safetensors"
    let examples = packageRoot + "/datasets/shapes/examples"
    let (first, second) = (examples + "/000000.png", examples + "/000003.png")
    let missing = temporaryFolder() + "/missing.png"
    let commandLines: [[String]] = [
      // Plain forms: every option, in both spellings, the defaults, `--` and `-`.
      [first], [first, second], [examples], ["--json", first, missing], [first, "--json"],
      ["--model", model, first], ["--model=" + model, "--beam=1", first], ["--beam", "5", examples],
      ["--sample", "--temperature", "0.7", "--top-k", "5", "--seed", "9", first],
      ["--sample", "--temperature=2.5", "--seed=+4", second], ["--max-length", "3", first],
      ["--forbid-unk", "--block-trigrams", "--beam", "02", second],
      ["--rerank", "4", "--json", second], ["--rerank=3", "--rerank-weight", "0.25", second],
      ["--batch-size", "1", "--threads", "2", first, second], ["--", first], ["help"], ["-"],
      // Left to ArgumentParser: help, short and unknown options, repeats, bad and missing values.
      [], ["--help"], ["-h"], ["--version"], ["--json", "--json", first],
      ["--beam", "1", "--beam", "2", first],
      ["--beam", "0", first], ["--beam", "x", first], ["--beam=", first], ["--model=", first], ["--model"],
      ["--seed", "-5", first], ["--temperature=-1", "--sample", first], ["--rerank-weight", "0.5", first],
      ["--rerank", "0", first], ["--threads", "0", first], ["--batch-size", "0x2", first],
      ["--sample=true", first], ["--nope", first], ["-x", first], ["--", "--", first], ["--", "-x"],
      ["--max-length", "1000", first], ["--top-k", "-1", first], ["--temperature", "nan", "--sample", first],
      ["", first], ["--json=", first], ["--beam=1=2", first], ["--=x", first], ["---json", first],
      ["-", "-"],
    ]
    var statuses = Set<Int32>()
    for arguments in commandLines {
      let stdin = arguments.contains("-") ? first + "\n" + second + "\n" : nil
      let direct = try runCaption(["describe"] + arguments, stdin: stdin, directory: packageRoot)
      let parsed = try runCaption(
        ["describe"] + arguments, stdin: stdin, environment: ["CAPTION_FULL_PARSE": "1"],
        directory: packageRoot)
      XCTAssertEqual(direct.status, parsed.status, "\(arguments)")
      XCTAssertEqual(direct.stdout, parsed.stdout, "\(arguments)")
      XCTAssertEqual(direct.stderr, parsed.stderr, "\(arguments)")
      statuses.insert(direct.status)
    }
    XCTAssertEqual(statuses, [0, 1, 64], "captions, a failed image and usage errors")
  }

  /// A train whose output folder cannot be made: one line naming the folder, exit 1.
  func testTrainOutputFolderErrorIsOneLine() throws {
    let blocker = temporaryFolder() + "/file"
    XCTAssertTrue(FileManager.default.createFile(atPath: blocker, contents: Data([1])))
    let run = try runCaption([
      "train", "--data", TrainerTests.dataFolder, "--out", blocker + "/runs/m.safetensors", "--max-steps",
      "1",
    ])
    XCTAssertEqual(run.status, 1)
    XCTAssertEqual(run.stderr, "caption: \(blocker): exists and is not a folder\n")
  }

  func testBadModelAndUsageErrors() throws {
    let folder = temporaryFolder()
    let bad = folder + "/bad.safetensors"
    try Data("not a model".utf8).write(to: URL(fileURLWithPath: bad))
    let badModel = try runCaption(["describe", "--model", bad, image])
    XCTAssertEqual(badModel.status, 1)
    XCTAssertEqual(badModel.stderr.split(separator: "\n").count, 1)
    XCTAssertTrue(badModel.stderr.contains(bad))

    XCTAssertEqual(try runCaption(["describe", "--beam", "0", image]).status, 64)
    XCTAssertEqual(try runCaption(["describe", "--no-such-option", image]).status, 64)
    XCTAssertEqual(try runCaption(["train", "--data", folder]).status, 64, "--out is required")
    XCTAssertEqual(
      try runCaption(["train", "--data", folder, "--out", folder + "/m.safetensors", "--layers", "3,X"])
        .status,
      64)
    for bad in [
      ["--word-loss", "-1"], ["--scene-loss", "-2"], ["--mention-loss", "-1"], ["--beta2", "1"],
    ] {
      let result = try runCaption(["train", "--data", folder, "--out", folder + "/m.safetensors"] + bad)
      XCTAssertEqual(result.status, 64, "\(bad)")
    }
    let missingData = try runCaption([
      "train", "--data", folder + "/nothing", "--out", folder + "/m.safetensors",
    ])
    XCTAssertEqual(missingData.status, 1)
    XCTAssertTrue(missingData.stderr.contains(folder + "/nothing"))
    let version = try runCaption(["--version"])
    XCTAssertEqual(version.status, 0)
    XCTAssertFalse(version.stdout.isEmpty)
  }

  func testEvaluateJSONHasTheSpecKeys() throws {
    let run = try runCaption([
      "evaluate", "--model", CommandTests.model, "--data", TrainerTests.dataFolder, "--split", "val",
      "--json",
    ])
    XCTAssertEqual(run.status, 0, run.stderr)
    let object = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Double]
    for key in [
      "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D", "object-F1", "attribute-accuracy",
      "count-accuracy", "relation-accuracy",
    ] {
      XCTAssertNotNil(object[key], key)
    }
  }

  /// `describe` and `evaluate` take one set of decoding flags, with the same help.
  func testDescribeAndEvaluateShareTheDecodingFlags() throws {
    func decodingSection(_ command: String) throws -> String {
      let help = try runCaption([command, "--help"], environment: ["COLUMNS": "80"]).stdout
      let start = try XCTUnwrap(help.range(of: "DECODING:\n"), "\(command) --help has a decoding group")
      return String(help[start.upperBound...]).components(separatedBy: "\n\n")[0]
    }
    let describe = try decodingSection("describe")
    XCTAssertEqual(try decodingSection("evaluate"), describe)
    for flag in [
      "--beam", "--max-length", "--sample", "--temperature", "--top-k", "--seed", "--forbid-unk",
      "--block-trigrams", "--rerank", "--rerank-weight",
    ] {
      XCTAssertTrue(describe.contains(flag + " ") || describe.contains(flag + "\n"), flag)
    }
    // beam 3 by default for both (beam N with --rerank N)
    XCTAssertTrue(describe.contains("(default: 3, or N with"), describe)
  }

  /// Decoding values out of range are usage errors (64) naming the flag, found before any model or
  /// image is read.
  func testDecodingRangesAreCheckedWhenParsed() throws {
    for command in [["describe", "missing.png"], ["evaluate", "--data", "missing"]] {
      for (flag, value) in [
        ("--beam", "1000000"), ("--beam", "0"), ("--beam", "\(DecodingOptions.maximumBeamSize + 1)"),
        ("--max-length", "0"), ("--max-length", "\(DecodingOptions.maximumLength + 1)"),
        ("--temperature", "0"), ("--temperature", "nan"), ("--top-k", "-1"),
      ] {
        let run = try runCaption(command + ["--model", "missing.safetensors", flag, value])
        XCTAssertEqual(run.status, 64, "\(command[0]) \(flag) \(value)")
        XCTAssertTrue(run.stderr.contains(flag), "\(command[0]) \(flag) \(value): \(run.stderr)")
      }
    }
    let widest = try runCaption([
      "describe", "--model", CommandTests.model, "--beam", "\(DecodingOptions.maximumBeamSize)", image,
    ])
    XCTAssertEqual(widest.status, 0, widest.stderr)
  }

  /// `evaluate --sample`: each image draws from its own stream, so the captions do not depend on the
  /// batch size.
  func testEvaluateSamplesIndependentlyOfTheBatchSize() throws {
    let folder = temporaryFolder()
    var results: [String] = []
    for batch in ["1", "3", "32"] {
      let path = folder + "/results-\(batch).json"
      let run = try runCaption([
        "evaluate", "--model", CommandTests.model, "--data", TrainerTests.dataFolder, "--split", "val",
        "--sample", "--temperature", "3", "--seed", "7", "--batch-size", batch, "--results", path,
      ])
      XCTAssertEqual(run.status, 0, run.stderr)
      XCTAssertTrue(run.stdout.contains("sampled"), run.stdout)
      results.append(try String(contentsOfFile: path, encoding: .utf8))
    }
    XCTAssertEqual(results[0], results[1])
    XCTAssertEqual(results[0], results[2])
  }

  /// Every `train` flag sets the `TrainOptions` field of its name (read back from the saved state),
  /// and `--resume` continues from that state without `--data`.
  func testTrainFlagsSetTheirOptionsAndResumeContinues() throws {
    let folder = temporaryFolder()
    var expected = TrainOptions(data: TrainerTests.dataFolder, out: folder + "/m.safetensors")
    expected.cache = folder + "/cache"
    expected.workers = 1
    expected.minCount = 1
    expected.maxLength = 12
    expected.initModel = CommandTests.model
    expected.imageSize = 16
    expected.layers = [.conv(4), .maxPool, .conv(6)]
    expected.pool = .avg
    expected.dv = 8
    expected.embed = 6
    expected.hidden = 10
    expected.cell = .gru
    expected.rnnLayers = 2
    expected.imageInput = .first
    expected.dropout = 0.2
    expected.freezeEncoder = true
    expected.encoderLearningRate = 0.0005
    expected.epochs = 3
    expected.batchSize = 8
    expected.captionsPerImage = 1
    expected.learningRate = 0.003
    expected.schedule = .step
    expected.warmupSteps = 2
    expected.stepEpochs = 2
    expected.stepGamma = 0.25
    expected.weightDecay = 0.01
    expected.beta2 = 0.99
    expected.wordLoss = 2
    expected.sceneLoss = 1
    expected.mentionLoss = 0.5
    expected.clip = 2
    expected.seed = 9
    expected.threads = 1
    expected.valEvery = 2
    expected.valImages = 4
    expected.patience = 3
    expected.keepEvery = 5
    expected.logEvery = 1
    expected.maxSteps = 1
    let run = try runCaption([
      "train", "--data", TrainerTests.dataFolder, "--out", folder + "/m.safetensors", "--cache",
      folder + "/cache", "--workers", "1", "--min-count", "1", "--max-length", "12", "--init",
      CommandTests.model, "--image-size", "16", "--layers", "4,M,6", "--pool", "avg", "--dv", "8",
      "--embed", "6", "--hidden", "10", "--cell", "gru", "--rnn-layers", "2", "--image-input", "first",
      "--dropout", "0.2", "--freeze-encoder", "--encoder-lr", "0.0005", "--epochs", "3", "--batch-size", "8",
      "--captions-per-image", "1", "--lr",
      "0.003", "--schedule", "step", "--warmup", "2", "--step-epochs", "2", "--step-gamma", "0.25",
      "--weight-decay", "0.01", "--beta2", "0.99", "--word-loss", "2", "--scene-loss", "1",
      "--mention-loss", "0.5", "--clip", "2", "--seed", "9", "--threads", "1", "--val-every", "2",
      "--val-images", "4", "--patience", "3", "--keep-every", "5", "--log-every", "1", "--max-steps", "1",
    ])
    XCTAssertEqual(run.status, 0, run.stderr)
    let files = TrainingFiles(out: folder + "/m.safetensors")
    func saved() throws -> (options: TrainOptions, step: String?) {
      let state = try Safetensors.read(path: files.state)
      let json = try XCTUnwrap(state.metadata["options"])
      return (try JSONDecoder().decode(TrainOptions.self, from: Data(json.utf8)), state.metadata["step"])
    }
    XCTAssertEqual(try saved().options, expected)
    XCTAssertEqual(try saved().step, "1")

    let resumed = try runCaption([
      "train", "--out", folder + "/m.safetensors", "--resume", "--max-steps", "2", "--threads", "1",
    ])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    XCTAssertEqual(try saved().step, "2")
    expected.maxSteps = 2
    expected.workers = 2  // how the work runs comes from the resuming command line
    expected.logEvery = 20
    XCTAssertEqual(try saved().options, expected)
  }

  /// Bad `train` values are usage errors (64) naming the flag, found before any file is read.
  func testTrainRangesAreCheckedWhenParsed() throws {
    let base = ["train", "--data", "missing", "--out", temporaryFolder() + "/m.safetensors"]
    for (flag, value) in [
      ("--layers", "3,X"), ("--layers", "M"), ("--image-size", "0"), ("--image-size", "8"),
      ("--rnn-layers", "0"), ("--dropout", "1"), ("--max-length", "1"), ("--max-length", "101"),
      ("--epochs", "0"), ("--log-every", "0"), ("--val-every", "0"), ("--step-epochs", "0"),
      ("--val-images", "-1"), ("--warmup", "-1"), ("--step-gamma", "nan"), ("--lr", "0"),
      ("--clip", "-1"), ("--word-loss", "-1"), ("--scene-loss", "inf"), ("--mention-loss", "-1"),
      ("--beta2", "1"), ("--workers", "-1"), ("--threads", "0"), ("--pool", "max"),
    ] {
      let run = try runCaption(base + ["\(flag)=\(value)"])
      XCTAssertEqual(run.status, 64, "\(flag) \(value)")
      XCTAssertTrue(run.stderr.contains(flag), "\(flag) \(value): \(run.stderr)")
    }
    let noData = try runCaption(["train", "--out", temporaryFolder() + "/m.safetensors"])
    XCTAssertEqual(noData.status, 64)
    XCTAssertTrue(noData.stderr.contains("--data"), noData.stderr)
    XCTAssertEqual(try runCaption(["train", "--data", "missing", "--out", ""]).status, 64)
  }

  /// Every command's help (found through the SUBCOMMANDS lists) fits in 80 columns, and every
  /// `caption ...` example in it that names bundled files (under datasets/ or models/) names files
  /// that exist and runs as written from the repository's folder, unless it writes files (then only
  /// the paths are checked).
  func testHelpExamplesNameBundledFilesThatExistAndRun() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().path
    var commands: [[String]] = [[]]
    var examples: [String] = []
    var next = 0
    while next < commands.count {
      let command = commands[next]
      next += 1
      let name = (["caption"] + command).joined(separator: " ")
      let help = try runCaption(command + ["--help"], environment: ["COLUMNS": "80"])
      XCTAssertEqual(help.status, 0, name)
      for line in help.stdout.split(separator: "\n") {
        XCTAssertLessThanOrEqual(line.count, 80, "\(name) --help: \(line)")
      }
      if let section = help.stdout.components(separatedBy: "SUBCOMMANDS:\n").dropFirst().first {
        for line in section.components(separatedBy: "\n\n")[0].split(separator: "\n")
        where line.hasPrefix("  ") && !line.hasPrefix("   ") {
          commands.append(command + [String(line.split(separator: " ")[0])])
        }
      }
      // Example lines start with `caption`; a trailing backslash continues one on the next line.
      var example: String?
      for line in help.stdout.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
        if example == nil && !line.hasPrefix("caption ") { continue }
        let text = (example.map { $0 + " " } ?? "") + line
        if text.hasSuffix("\\") {
          example = String(text.dropLast()).trimmingCharacters(in: .whitespaces)
        } else {
          examples.append(text)
          example = nil
        }
      }
    }
    XCTAssertGreaterThanOrEqual(commands.count, 10, "every command and subcommand")

    let writers: Set<String> = ["--out", "--results", "--references-out", "--report", "--cache"]
    var ran = 0
    for example in Set(examples).sorted() {
      let words = example.components(separatedBy: " #")[0].split(separator: " ").map(String.init)
      let bundled = words.filter { $0.hasPrefix("datasets/") || $0.hasPrefix("models/") }
      if bundled.isEmpty { continue }
      for path in bundled {
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/" + path), "\(example): \(path)")
      }
      if !writers.isDisjoint(with: words) { continue }
      let run = try runCaption(Array(words.dropFirst()), directory: root)
      XCTAssertEqual(run.status, 0, "\(example): \(run.stderr)")
      XCTAssertFalse(run.stdout.isEmpty, example)
      ran += 1
    }
    XCTAssertGreaterThanOrEqual(ran, 4, "the examples on bundled files run")
  }

  /// `bench --forward-only` times the encoder's forward alone and prints its figure last.
  func testBenchForwardOnlyPrintsItsFigureLast() throws {
    let run = try runCaption([
      "bench", "--forward-only", "--image-size", "16", "--layers", "4,M,8", "--dv", "8", "--batch", "3",
      "--steps", "2", "--threads", "1",
    ])
    XCTAssertEqual(run.status, 0, run.stderr)
    let last = try XCTUnwrap(run.stdout.split(separator: "\n").last)
    XCTAssertTrue(last.hasPrefix("forward_images_per_s="), String(last))
    let figure = try XCTUnwrap(Double(last.dropFirst("forward_images_per_s=".count)), String(last))
    XCTAssertGreaterThan(figure, 0)
    XCTAssertFalse(run.stdout.contains("train_images_per_s"), "the forward alone")
    let both = try runCaption(["bench", "--forward-only", "--decode"])
    XCTAssertEqual(both.status, 64)
  }

  /// `bench --isa` runs the kernels at the level it names, and `--profile` reports the measured peak
  /// and each convolution's share of it (a Winograd layer also by the multiplies it does; one that
  /// runs the max-pool after it inside names both).
  func testBenchIsaAndProfileReportThePeakAndEachConvolutionsShare() throws {
    let run = try runCaption([
      "bench", "--isa", "baseline", "--profile", "--image-size", "16", "--layers", "8,8,M,8,M", "--dv", "8",
      "--embed", "8", "--hidden", "8", "--vocab", "10", "--length", "2", "--batch", "2", "--steps", "1",
      "--threads", "1",
    ])
    XCTAssertEqual(run.status, 0, run.stderr)
    XCTAssertTrue(run.stdout.contains("threads 1, kernels baseline x86-64"), run.stdout)
    XCTAssertTrue(run.stdout.contains("GFLOP/s FP32 (baseline x86-64, 1 threads"), run.stdout)
    let lines = run.stdout.split(separator: "\n")
    for name in ["conv1+maxpool0 8→8 16×16", "conv2 8→8 8×8"] {
      for pass in ["fwd", "bwd"] {
        let line = try XCTUnwrap(lines.first { $0.contains("\(name) \(pass)") }, run.stdout)
        XCTAssertTrue(line.contains("% of peak (Winograd: "), String(line))
      }
    }
    let conv0 = try XCTUnwrap(lines.first { $0.contains("conv0 3→8 16×16 fwd") })
    XCTAssertTrue(conv0.contains("% of peak") && !conv0.contains("Winograd"), String(conv0))
    // The fused pool has no line; the other one has.
    XCTAssertFalse(lines.contains { $0.contains("maxpool0") && !$0.contains("conv1+maxpool0") }, run.stdout)
    XCTAssertTrue(lines.contains { $0.contains("maxpool1 8×8 fwd") }, run.stdout)
    XCTAssertEqual(try runCaption(["bench", "--isa", "sse9"]).status, 64)
  }

  /// `bench --forward-only --profile` times each stage of the encoder's forward, each convolution
  /// with its share of the peak and a Winograd layer with the tile it uses, and prints its figure
  /// last.
  func testBenchForwardOnlyProfileTimesEachStage() throws {
    let run = try runCaption([
      "bench", "--forward-only", "--profile", "--image-size", "16", "--layers", "8,8,M,8,M", "--dv", "8",
      "--batch", "1", "--steps", "2", "--threads", "1",
    ])
    XCTAssertEqual(run.status, 0, run.stderr)
    let lines = run.stdout.split(separator: "\n")
    XCTAssertTrue(lines.contains { $0.contains("GFLOP/s FP32") }, run.stdout)
    let conv1 = try XCTUnwrap(lines.first { $0.contains("conv1+maxpool0 8→8 16×16 fwd") }, run.stdout)
    XCTAssertTrue(conv1.contains("% of peak (Winograd F(4×4): "), String(conv1))
    let conv2 = try XCTUnwrap(lines.first { $0.contains("conv2 8→8 8×8 fwd") }, run.stdout)
    XCTAssertTrue(conv2.contains("% of peak (Winograd F(2×2): "), String(conv2))
    let conv0 = try XCTUnwrap(lines.first { $0.contains("conv0 3→8 16×16 fwd") }, run.stdout)
    XCTAssertTrue(conv0.contains("% of peak") && !conv0.contains("Winograd"), String(conv0))
    XCTAssertFalse(lines.contains { $0.contains("maxpool0") && !$0.contains("conv1+maxpool0") }, run.stdout)
    XCTAssertTrue(lines.contains { $0.contains("maxpool1 8×8 fwd") }, run.stdout)
    XCTAssertTrue(lines.contains { $0.hasPrefix("  total") }, run.stdout)
    XCTAssertTrue(lines.last?.hasPrefix("forward_images_per_s=") ?? false, run.stdout)
  }

  /// `CAPTION_ISA` narrows every command's kernels (SPEC §2): `bench` names the level it ran at,
  /// `describe` at the baseline level gives the default's caption and log-probability within the
  /// kernels' bounds, and an unknown name is one line and exit 1.
  func testCaptionIsaInTheEnvironmentNarrowsEveryCommandsKernels() throws {
    let bench = try runCaption(
      [
        "bench", "--image-size", "16", "--layers", "8,M", "--dv", "8", "--embed", "8", "--hidden", "8",
        "--vocab", "10", "--length", "2", "--batch", "2", "--steps", "1", "--threads", "1",
      ], environment: ["CAPTION_ISA": "baseline"])
    XCTAssertEqual(bench.status, 0, bench.stderr)
    XCTAssertTrue(bench.stdout.contains("kernels baseline x86-64"), bench.stdout)
    let image = packageRoot + "/datasets/shapes/examples/000004.png"
    let model = packageRoot + "/models/shapes.safetensors"
    func describe(_ isa: String?) throws -> [String: Any] {
      let run = try runCaption(
        ["describe", "--json", "--model", model, image], environment: isa.map { ["CAPTION_ISA": $0] } ?? [:])
      XCTAssertEqual(run.status, 0, run.stderr)
      return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
    }
    let best = try describe(nil)
    let narrow = try describe("baseline")
    XCTAssertEqual(best["tokens"] as? [String], narrow["tokens"] as? [String])
    let (a, b) = (try XCTUnwrap(best["logprob"] as? Double), try XCTUnwrap(narrow["logprob"] as? Double))
    XCTAssertEqual(a, b, accuracy: 1e-4 * abs(a))
    // Narrower than AVX-512, one image's only larger product (the first convolution's) is small
    // enough for the project's kernel: OpenBLAS is never loaded (the loader's log names no such file).
    for isa in ["avx2", "baseline"] where isa == "baseline" || ck_isa() >= CK_ISA_AVX2 {
      let traced = try runCaption(
        ["describe", "--model", model, image], environment: ["CAPTION_ISA": isa, "LD_DEBUG": "files"])
      XCTAssertEqual(traced.status, 0, traced.stderr)
      XCTAssertTrue(traced.stderr.contains("file=libpng"), "the loader's log: \(traced.stderr.prefix(300))")
      XCTAssertFalse(traced.stderr.contains("libopenblas"), isa)
    }
    let unknown = try runCaption(["describe", "--model", model, image], environment: ["CAPTION_ISA": "sse9"])
    XCTAssertEqual(unknown.status, 1)
    XCTAssertEqual(
      unknown.stderr, "caption: CAPTION_ISA: unknown instruction set 'sse9' (avx512, avx2 or baseline)\n")
  }

  /// `bench --from-features` times training from cached features and prints its figure last.
  func testBenchFromFeaturesPrintsItsFigureLast() throws {
    let run = try runCaption([
      "bench", "--from-features", "--image-size", "16", "--layers", "4,M,8", "--dv", "8", "--embed", "8",
      "--hidden", "8", "--vocab", "20", "--length", "4", "--batch", "3", "--steps", "2", "--threads", "1",
    ])
    XCTAssertEqual(run.status, 0, run.stderr)
    XCTAssertTrue(run.stdout.contains("pool avg (8 features)"), run.stdout)
    let last = try XCTUnwrap(run.stdout.split(separator: "\n").last)
    XCTAssertTrue(last.hasPrefix("features_train_images_per_s="), String(last))
    XCTAssertGreaterThan(try XCTUnwrap(Double(last.dropFirst("features_train_images_per_s=".count))), 0)
    XCTAssertEqual(try runCaption(["bench", "--from-features", "--forward-only"]).status, 64)
  }

  /// `dataset shapes --image-size WxH --jpeg-quality Q`: photo-sized images whose centre crop is the
  /// square scene; a lower quality makes smaller files; a bad size or quality is a usage error.
  func testDatasetShapesMakesPhotoSizedJPEGs() throws {
    let folder = temporaryFolder()
    func render(_ name: String, _ extra: [String]) throws -> String {
      let out = folder + "/" + name
      let run = try runCaption(["dataset", "shapes", "--out", out, "--count", "3", "--seed", "4"] + extra)
      XCTAssertEqual(run.status, 0, run.stderr)
      return out
    }
    let square = try render("square", ["--image-size", "30"])
    let wide = try render("wide", ["--image-size", "40x30"])
    for index in 0..<3 {
      let name = "/images/00000\(index).png"
      let decoded = try ImageDecoder().decode(path: wide + name)
      XCTAssertEqual([decoded.width, decoded.height], [40, 30])
      XCTAssertEqual(
        try Preprocess.load(path: wide + name, size: 30), try Preprocess.load(path: square + name, size: 30))
    }
    let scenes = try String(contentsOfFile: wide + "/scenes.json", encoding: .utf8)
    XCTAssertTrue(scenes.contains("\"width\":40,\"height\":30"), scenes)
    func jpegBytes(_ out: String) throws -> Int {
      try FileManager.default.contentsOfDirectory(atPath: out + "/images").reduce(0) {
        $0 + (try FileManager.default.attributesOfItem(atPath: out + "/images/" + $1)[.size] as! Int)
      }
    }
    let low = try render("low", ["--image-size", "50x40", "--format", "jpg", "--jpeg-quality", "20"])
    let high = try render("high", ["--image-size", "50x40", "--format", "jpg", "--jpeg-quality", "98"])
    XCTAssertLessThan(try jpegBytes(low), try jpegBytes(high))
    for bad in [["--image-size", "40x"], ["--image-size", "8x30"], ["--jpeg-quality", "0"]] {
      let run = try runCaption(
        ["dataset", "shapes", "--out", folder + "/bad", "--count", "1", "--seed", "1"] + bad)
      XCTAssertEqual(run.status, 64, "\(bad)")
    }
  }

  /// `bench --preset` names a configuration; a flag given beside it replaces the preset's value.
  func testBenchPresetSetsTheConfigurationAndFlagsReplaceItsValues() throws {
    let run = try runCaption([
      "bench", "--preset", "vgg16-224", "--forward-only", "--image-size", "32", "--batch", "1", "--dv",
      "8", "--steps", "1", "--threads", "1",
    ])
    XCTAssertEqual(run.status, 0, run.stderr)
    XCTAssertTrue(
      run.stdout.contains(
        "image 32, layers 64,64,M,128,128,M,256,256,256,M,512,512,512,M,512,512,512,M, dv 8, batch 1,"),
      run.stdout)
    XCTAssertEqual(try runCaption(["bench", "--preset", "vgg99-224"]).status, 64)
  }
}
