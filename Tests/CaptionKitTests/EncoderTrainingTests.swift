import CShims
import XCTest

@testable import CaptionKit

/// `caption train --encoder-init`, `--freeze-encoder`, `--finetune-encoder-after`, `--encoder-lr`
/// (SPEC §3a) on the tiny shapes data of TrainerTests.
final class EncoderTrainingTests: XCTestCase {
  /// A caption encoder file of [4, M] convolutions at 16 px with its own mean and std.
  private func encoderFile(in folder: String) throws -> (path: String, file: EncoderFile) {
    var generator = SeededGenerator(seed: 11)
    let weight = Tensor(zeros: [4, 3, 3, 3])
    Initialization.uniform(weight, bound: 0.3, using: &generator)
    let bias = Tensor(zeros: [4])
    Initialization.uniform(bias, bound: 0.1, using: &generator)
    let file = EncoderFile(
      source: .encoder, layers: [.conv(4), .maxPool], imageSize: 16, mean: [0.4, 0.5, 0.6],
      std: [0.2, 0.25, 0.3], convolutions: [(weight, bias)])
    let path = folder + "/tiny.encoder.safetensors"
    try file.save(path: path)
    return (path, file)
  }

  private func options(out: String, encoder: String) -> TrainOptions {
    var options = TrainerTests.tinyOptions(out: out)
    options.layers = TrainOptions(data: "", out: "").layers  // as on a command line without --layers
    options.imageSize = TrainOptions(data: "", out: "").imageSize
    options.encoderInit = encoder
    options.wordLoss = 1
    return options
  }

  /// Frozen: the convolutions stay the file's, bit for bit, while the rest learns; the model has
  /// the file's layers, size, mean and std.
  func testFrozenConvolutionsStayTheFilesWhileTheRestLearns() throws {
    let folder = temporaryFolder()
    let (path, file) = try encoderFile(in: folder)
    var frozen = options(out: folder + "/frozen.safetensors", encoder: path)
    frozen.freezeEncoder = true
    var lines: [String] = []
    _ = try Trainer(options: frozen, log: { lines.append($0) }).run(resume: false)
    XCTAssertTrue(
      lines.contains { $0.hasPrefix("convolutions from \(path) (caption encoder, 16 px") }, "\(lines)")
    let model = try ModelFile.load(path: TrainingFiles(out: frozen.out).latest)
    XCTAssertEqual(model.config.layers, [.conv(4), .maxPool])
    XCTAssertEqual(model.config.imageSize, 16)
    XCTAssertEqual(model.mean, [0.4, 0.5, 0.6])
    XCTAssertEqual(model.std, [0.2, 0.25, 0.3])
    XCTAssertEqual(model.tensors["encoder.conv0.weight"]!.array, file.convolutions[0].weight.array)
    XCTAssertEqual(model.tensors["encoder.conv0.bias"]!.array, file.convolutions[0].bias.array)
    let initial = CaptionModel(config: model.config)
    var generator = SeededGenerator(seed: frozen.seed)
    initial.initialize(using: &generator)
    XCTAssertNotEqual(model.tensors["encoder.fc.weight"]!.array, initial.encoder.fc.weight.value.array)

    // Not frozen: the convolutions move.
    let trained = options(out: folder + "/trained.safetensors", encoder: path)
    _ = try Trainer(options: trained, log: { _ in }).run(resume: false)
    let moved = try ModelFile.load(path: TrainingFiles(out: trained.out).latest)
    XCTAssertNotEqual(moved.tensors["encoder.conv0.weight"]!.array, file.convolutions[0].weight.array)
  }

  /// Frozen for the first of three epochs, then trained with their own rate: the convolutions are
  /// the file's after epoch 1 and change after; a run stopped at the switch and at a later step and
  /// resumed ends with the same weights and the same encoder Adam step count as one never stopped.
  func testFinetuneAfterResumesExactlyAcrossTheSwitch() throws {
    let folder = temporaryFolder()
    let (path, file) = try encoderFile(in: folder)
    func finetune(_ name: String) -> TrainOptions {
      var options = options(out: folder + "/\(name).safetensors", encoder: path)
      options.epochs = 3
      options.finetuneEncoderAfter = 1
      options.encoderLearningRate = 3e-3
      return options
    }
    let straight = finetune("straight")
    _ = try Trainer(options: straight, log: { _ in }).run(resume: false)
    let straightModel = try ModelFile.load(path: TrainingFiles(out: straight.out).latest)
    XCTAssertNotEqual(straightModel.tensors["encoder.conv0.weight"]!.array, file.convolutions[0].weight.array)
    let straightState = try Safetensors.read(path: TrainingFiles(out: straight.out).state)
    let steps = try XCTUnwrap(Int(straightState.metadata["adam_steps"] ?? ""))
    XCTAssertEqual(Int(straightState.metadata["encoder_adam_steps"] ?? ""), steps * 2 / 3)  // 2 of 3 epochs

    // One epoch (4 batches of 8 of the 32 training images), then stop: still the file's weights.
    var first = finetune("resumed")
    first.maxSteps = steps / 3
    _ = try Trainer(options: first, log: { _ in }).run(resume: false)
    let atSwitch = try ModelFile.load(path: TrainingFiles(out: first.out).latest)
    XCTAssertEqual(atSwitch.tensors["encoder.conv0.weight"]!.array, file.convolutions[0].weight.array)
    var second = finetune("resumed")
    second.maxSteps = steps / 3 + 2
    _ = try Trainer(options: second, log: { _ in }).run(resume: true)
    _ = try Trainer(options: finetune("resumed"), log: { _ in }).run(resume: true)
    let resumed = try ModelFile.load(path: TrainingFiles(out: first.out).latest)
    for (name, tensor) in straightModel.tensors {
      XCTAssertEqual(resumed.tensors[name]!.array, tensor.array, "\(name) differs after resume")
    }
    let resumedState = try Safetensors.read(path: TrainingFiles(out: first.out).state)
    XCTAssertEqual(resumedState.metadata["encoder_adam_steps"], straightState.metadata["encoder_adam_steps"])
  }

  func testConflictingFlagsAndFilesAreOneLineErrors() throws {
    let folder = temporaryFolder()
    let (path, _) = try encoderFile(in: folder)
    var layers = options(out: folder + "/a.safetensors", encoder: path)
    layers.layers = [.conv(8), .maxPool]
    XCTAssertThrowsError(try Trainer(options: layers, log: { _ in }).run(resume: false)) { error in
      let error = error as! CaptionError
      XCTAssertEqual(error.path, path)
      XCTAssertTrue(error.reason.contains("its layers 4,M differ from --layers 8,M"), error.reason)
    }
    var size = options(out: folder + "/b.safetensors", encoder: path)
    size.imageSize = 32
    XCTAssertThrowsError(try Trainer(options: size, log: { _ in }).run(resume: false)) { error in
      let error = error as! CaptionError
      XCTAssertEqual(error.path, path)
      XCTAssertTrue(error.reason.contains("image size 16 differs from --image-size 32"), error.reason)
    }
    // The same layer list as the file's is no conflict.
    var same = options(out: folder + "/c.safetensors", encoder: path)
    same.layers = [.conv(4), .maxPool]
    same.maxSteps = 1
    XCTAssertNoThrow(try Trainer(options: same, log: { _ in }).run(resume: false))

    let batchNorm = options(
      out: folder + "/d.safetensors", encoder: fixturePath("vgg/tiny_vgg_bn.safetensors"))
    XCTAssertThrowsError(try Trainer(options: batchNorm, log: { _ in }).run(resume: false)) { error in
      XCTAssertTrue((error as! CaptionError).reason.contains("batch norm"))
    }
    var both = options(out: folder + "/e.safetensors", encoder: path)
    both.freezeEncoder = true
    both.finetuneEncoderAfter = 1
    XCTAssertThrowsError(try both.validate())
    var rate = options(out: folder + "/f.safetensors", encoder: path)
    rate.encoderLearningRate = 0
    XCTAssertThrowsError(try rate.validate())
  }
}
