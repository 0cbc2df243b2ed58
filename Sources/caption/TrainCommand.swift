import ArgumentParser
import CaptionKit
import Foundation

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Train a model on a captioning dataset.",
    discussion: """
      Writes the best model (by validation CIDEr-D) to --out, and beside it NAME.latest.safetensors,
      NAME.latest.state (for --resume) and NAME.log.jsonl (one JSON object per logged step).
      Ctrl-C saves the latest state and exits with status 130; --resume continues exactly.

      Examples:
        caption dataset shapes --out data/shapes --count 10000 --seed 1
        caption train --data data/shapes --out runs/shapes.safetensors
        caption train --data dataset_flickr8k.json --images Flicker8k_Dataset --out runs/f8k.safetensors
        caption train --data data/shapes --out runs/shapes.safetensors --resume
      """)

  @OptionGroup(title: "Data") var data: DataOptions
  @OptionGroup(title: "Model") var model: ModelOptions
  @OptionGroup(title: "Optimisation") var optimisation: OptimisationOptions
  @OptionGroup(title: "Checkpoints and validation") var checkpoints: CheckpointOptions

  func validate() throws {
    if checkpoints.out.isEmpty { throw ValidationError("--out must name a file") }
    if !checkpoints.resume && data.data == nil {
      throw ValidationError("--data is required (unless --resume)")
    }
  }

  func options() throws -> TrainOptions {
    var o = TrainOptions(data: data.data ?? "", out: checkpoints.out)
    o.images = data.images
    o.valData = data.valData
    o.trainList = data.trainList
    o.valList = data.valList
    o.testList = data.testList
    o.cache = data.cache
    o.workers = data.workers
    o.minCount = data.minCount
    o.maxLength = data.maxLength
    o.initModel = model.initModel
    if let size = model.imageSize { o.imageSize = size }
    if let text = model.layers {
      guard let layers = EncoderLayer.parseList(text) else {
        throw ValidationError("--layers takes a list like 32,32,M,64,64,M")
      }
      o.layers = layers
    }
    if let pool = model.pool { o.pool = pool }
    if let dv = model.dv { o.dv = dv }
    if let embed = model.embed { o.embed = embed }
    if let hidden = model.hidden { o.hidden = hidden }
    if let cell = model.cell { o.cell = cell }
    if let layers = model.rnnLayers { o.rnnLayers = layers }
    if let input = model.imageInput { o.imageInput = input }
    if let dropout = model.dropout { o.dropout = dropout }
    if let epochs = optimisation.epochs { o.epochs = epochs }
    if let batch = optimisation.batchSize { o.batchSize = batch }
    if let k = optimisation.captionsPerImage { o.captionsPerImage = k }
    if let lr = optimisation.lr { o.learningRate = lr }
    if let schedule = optimisation.schedule { o.schedule = schedule }
    if let warmup = optimisation.warmup { o.warmupSteps = warmup }
    if let stepEpochs = optimisation.stepEpochs { o.stepEpochs = stepEpochs }
    if let gamma = optimisation.stepGamma { o.stepGamma = gamma }
    if let decay = optimisation.weightDecay { o.weightDecay = decay }
    if let beta2 = optimisation.beta2 { o.beta2 = beta2 }
    o.wordLoss = optimisation.wordLoss ?? TrainOptions.defaultWordLoss
    o.sceneLoss = optimisation.sceneLoss ?? TrainOptions.defaultSceneLoss
    o.mentionLoss = optimisation.mentionLoss ?? TrainOptions.defaultMentionLoss
    if let clip = optimisation.clip { o.clip = clip }
    if let seed = optimisation.seed { o.seed = seed }
    o.threads = optimisation.threads
    o.valEvery = checkpoints.valEvery
    o.valImages = checkpoints.valImages
    o.patience = checkpoints.patience
    o.keepEvery = checkpoints.keepEvery
    o.logEvery = checkpoints.logEvery
    o.maxSteps = checkpoints.maxSteps
    do { try o.validate() } catch let error as CaptionError { throw ValidationError(error.reason) }
    return o
  }

  func run() throws {
    let options = try options()
    var summary: TrainSummary?
    try reportingErrors {
      let bar = TerminalLine().enabled ? ProgressBar() : nil
      let trainer = Trainer(
        options: options,
        log: { line in
          bar?.clear()
          printError(line, prefix: "")
        },
        progress: bar.map { bar in { bar.draw($0) } },
        status: { bar?.line.show($0) })
      summary = try trainer.run(resume: checkpoints.resume)
      bar?.clear()
    }
    guard let summary else { return }
    printSummary(summary)
    if summary.interrupted {
      printError(
        "interrupted: the latest state is saved at \(summary.files.state); continue with --resume", prefix: ""
      )
      throw ExitCode(130)
    }
  }

  func printSummary(_ s: TrainSummary) {
    var lines: [String] = []
    lines.append(
      String(
        format: "trained %d steps over %d epochs in %.0f s (%.1f images/s)", s.steps, s.epochsDone, s.seconds,
        s.imagesPerSecond))
    if let best = s.bestEpoch {
      let metrics = s.bestMetrics.sorted { $0.key < $1.key }.map {
        String(format: "%@ %.4f", $0.key, $0.value)
      }
      lines.append("best epoch \(best): " + metrics.joined(separator: ", "))
    }
    lines.append(
      s.bestEpoch == nil
        ? "best model: none yet (written after the first validation)" : "best model: \(s.files.best)")
    lines.append("latest model and state: \(s.files.latest), \(s.files.state)")
    lines.append("log: \(s.files.log)")
    if s.skippedImages > 0 { lines.append("skipped \(s.skippedImages) images that could not be read") }
    for line in lines { printError(line, prefix: "") }
  }
}

struct DataOptions: ParsableArguments {
  @Option(
    help:
      "The dataset: a folder with captions.json, a Karpathy-split JSON, a COCO captions JSON, or a Flickr8k token file."
  )
  var data: String?
  @Option(help: "The folder the dataset's image paths are relative to.") var images: String?
  @Option(help: "A separate validation file (COCO captions JSON).") var valData: String?
  @Option(help: "Flickr8k: the training image list.") var trainList: String?
  @Option(help: "Flickr8k: the validation image list.") var valList: String?
  @Option(help: "Flickr8k: the test image list.") var testList: String?
  @Option(help: "Cache the preprocessed images in this file (written once, read in later epochs).") var cache:
    String?
  @Option(help: "Image decoding threads.") var workers: Int = 2
  @Option(help: "Words seen fewer times than this become <unk>.") var minCount: Int = 2
  @Option(help: "Decoder steps per caption (words + <end>).") var maxLength: Int = 20
}

struct ModelOptions: ParsableArguments {
  @Option(
    name: .customLong("init"), help: "Start from this model's weights (and its vocabulary and architecture).")
  var initModel: String?
  @Option(help: "Image side in pixels (default 64).") var imageSize: Int?
  @Option(
    help:
      "Encoder layers: conv channel counts and M for 2×2 max-pool (default 16,16,M,32,32,M,64,64,M,128,M).")
  var layers: String?
  @Option(help: "Encoder pooling: avg or flatten (default flatten, which keeps where things are).") var pool:
    PoolMode?
  @Option(help: "Image vector size (default 256).") var dv: Int?
  @Option(help: "Word embedding size (default 128).") var embed: Int?
  @Option(help: "Recurrent hidden size (default 256).") var hidden: Int?
  @Option(help: "Recurrent cell: lstm, gru, rnn, peephole, coupled (default lstm).") var cell: CellType?
  @Option(help: "Stacked recurrent layers (default 1).") var rnnLayers: Int?
  @Option(help: "Image input: every step or first step only (default every).") var imageInput: ImageInput?
  @Option(help: "Dropout on embeddings and hidden states (default 0.1).") var dropout: Float?
}

struct OptimisationOptions: ParsableArguments {
  @Option(help: "Passes over the training images (default 14).") var epochs: Int?
  @Option(help: "Images per batch (default 32).") var batchSize: Int?
  @Option(help: "Captions trained per image in a batch, sharing one encoder pass (default 2).")
  var captionsPerImage: Int?
  @Option(help: "Adam learning rate (default 2e-3).") var lr: Float?
  @Option(help: "Learning-rate schedule after warm-up: cosine, step, constant (default cosine).")
  var schedule: LearningRateSchedule?
  @Option(help: "Linear warm-up steps (default 200).") var warmup: Int?
  @Option(help: "Step schedule: epochs between drops (default 10).") var stepEpochs: Int?
  @Option(help: "Step schedule: factor per drop (default 0.5).") var stepGamma: Float?
  @Option(help: "Decoupled weight decay (AdamW; default 0).") var weightDecay: Float?
  @Option(help: "Adam's β₂, the decay of its squared-gradient average (default 0.999).") var beta2: Float?
  @Option(
    help:
      "Weight of the auxiliary word loss: the image vector alone predicts which words the captions use (0: off; default 10)."
  ) var wordLoss: Float?
  @Option(
    help: """
      Weight of the auxiliary scene loss, used when the data has scenes.json (as `caption dataset \
      shapes` writes it): the image vector alone answers which shapes, colour-shape pairs, \
      positions and relations the scene holds (0: off; default 3).
      """
  ) var sceneLoss: Float?
  @Option(
    help: """
      Weight of the auxiliary mention loss, used when the data has scenes.json: after each object \
      the caption names, the decoder's state alone answers where that object is (0: off; default 0.05).
      """
  ) var mentionLoss: Float?
  @Option(help: "Clip the gradient's global norm to this (0: off; default 5).") var clip: Float?
  @Option(help: "Seed for initialisation, shuffling and dropout (default 1).") var seed: UInt64?
  @Option(help: "Compute threads.") var threads: Int = 2
}

struct CheckpointOptions: ParsableArguments {
  @Option(help: "Where the best model goes (NAME.safetensors); the other files go beside it.") var out: String
  @Flag(help: "Continue the run saved beside --out.") var resume = false
  @Option(help: "Validate every N epochs.") var valEvery: Int = 1
  @Option(help: "Validation images captioned for CIDEr-D at most.") var valImages: Int = 500
  @Option(help: "Stop after N validations without improvement (0: never).") var patience: Int = 0
  @Option(help: "Also keep NAME.epochEEE.safetensors every K epochs (0: never).") var keepEvery: Int = 0
  @Option(help: "Log every N steps.") var logEvery: Int = 20
  @Option(help: "Stop after N steps in all (0: no limit).") var maxSteps: Int = 0
}

extension PoolMode: ExpressibleByArgument {}
extension CellType: ExpressibleByArgument {}
extension ImageInput: ExpressibleByArgument {}
extension LearningRateSchedule: ExpressibleByArgument {}

/// One line redrawn in place on a terminal: epoch, step, loss, images/s, ETA (once known).
final class ProgressBar {
  let line = TerminalLine()

  func draw(_ p: TrainProgress) {
    let width = 24
    let filled = min(width, p.batch * width / max(p.batchesPerEpoch, 1))
    let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
    // The ETA before the figures, so that a narrow terminal cuts those first.
    let eta = p.secondsLeft.map { " ETA " + TrainProgress.clock($0) } ?? ""
    line.show(
      String(format: "epoch %d/%d [%@] %d/%d", p.epoch, p.epochs, bar, p.batch, p.batchesPerEpoch) + eta
        + String(format: " loss %.3f %.0f img/s", p.loss, p.imagesPerSecond))
  }

  func clear() { line.clear() }
}
