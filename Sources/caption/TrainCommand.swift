import ArgumentParser
import CaptionKit
import FoundationEssentials
import Glibc

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Train a model on a captioning dataset.",
    discussion: """
      Writes the best model (by validation CIDEr-D) to --out, and beside it \
      NAME.latest.safetensors, NAME.latest.state (for --resume) and \
      NAME.log.jsonl (one JSON object per logged step). Ctrl-C saves the latest \
      state and exits with status 130; --resume continues exactly.

      Examples:
        caption dataset shapes --out data/shapes --count 10000 --seed 1
        caption train --data data/shapes --out runs/shapes.safetensors
        caption train --data data/shapes --out runs/shapes.safetensors --resume
        caption train --data dataset_flickr8k.json --images Flicker8k_Dataset \\
          --out runs/f8k.safetensors
      """)

  @OptionGroup(title: "Data") var data: DataOptions
  @OptionGroup(title: "Model") var model: ModelOptions
  @OptionGroup(title: "Optimisation") var optimisation: OptimisationOptions
  @OptionGroup(title: "Checkpoints and validation") var checkpoints: CheckpointOptions

  func validate() throws {
    do { try options().validate(resuming: checkpoints.resume) } catch let error as CaptionError {
      throw ValidationError(error.reason)
    }
  }

  func options() -> TrainOptions { TrainOptions(flags: [data, model, optimisation, checkpoints]) }

  func run() throws {
    let options = options()
    if let ranks = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init), ranks >= 2 {
      // One rank of `mpirun -np N`: the data-parallel trainer, which links MPI (SPEC §8).
      let encoder = JSONEncoder()
      encoder.nonConformingFloatEncodingStrategy = .convertToString(
        positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
      let json = String(decoding: (try? encoder.encode(options)) ?? Data(), as: UTF8.self)
      handOver(
        to: "caption-train-mpi", what: "the data-parallel trainer",
        ["--options", json] + (checkpoints.resume ? ["--resume"] : []))
    }
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
      do {
        summary = try trainer.run(resume: checkpoints.resume)
      } catch is Interrupted {
        bar?.clear()
        printError("interrupted before the first step: nothing was saved", prefix: "")
        throw ExitCode(130)
      }
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
        cFormat: "trained %ld steps over %ld epochs in %.0f s (%.1f images/s)", s.steps, s.epochsDone,
        s.seconds,
        s.imagesPerSecond))
    if let best = s.bestEpoch {
      let metrics = s.bestMetrics.sorted { $0.key < $1.key }.map {
        $0.key + String(cFormat: " %.4f", $0.value)
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

/// `TrainOptions`' defaults, which the flags' defaults are.
private let defaults = TrainOptions(data: "", out: "")

// Each flag below is named as the `TrainOptions` field it sets (`TrainOptions(flags:)`).

struct DataOptions: ParsableArguments {
  @Option(
    help:
      "The dataset: a folder with captions.json, a Karpathy-split JSON, a COCO captions JSON, or a Flickr8k token file."
  )
  var data = ""
  @Option(help: "The folder the dataset's image paths are relative to.") var images: String?
  @Option(help: "A separate validation file (COCO captions JSON).") var valData: String?
  @Option(help: "Flickr8k: the training image list.") var trainList: String?
  @Option(help: "Flickr8k: the validation image list.") var valList: String?
  @Option(help: "Flickr8k: the test image list.") var testList: String?
  @Option(help: "Cache the preprocessed images in this file (written once, read in later epochs).") var cache:
    String?
  @Option(
    help:
      "The feature cache of a frozen encoder: its features, computed once (default: NAME.features beside --out)."
  ) var featureCache: String?
  @Flag(help: "Run a frozen encoder on the images every epoch instead of caching its features.")
  var noFeatureCache = false
  @Option(help: "Image decoding threads.") var workers = defaults.workers
  @Option(help: "Words seen fewer times than this become <unk>.") var minCount = defaults.minCount
  @Option(help: "Decoder steps per caption (words + <end>).") var maxLength = defaults.maxLength
}

struct ModelOptions: ParsableArguments {
  @Option(
    name: .customLong("init"), help: "Start from this model's weights (and its vocabulary and architecture).")
  var initModel: String?
  @Option(help: "Image side in pixels.") var imageSize = defaults.imageSize
  @Option(help: "Encoder layers: conv channel counts and M for 2×2 max-pool.")
  var layers = EncoderLayers(defaults.layers)
  @Option(help: "Encoder pooling: avg, or flatten (which keeps where things are).") var pool = defaults.pool
  @Option(help: "Image vector size.") var dv = defaults.dv
  @Option(help: "Word embedding size.") var embed = defaults.embed
  @Option(help: "Recurrent hidden size.") var hidden = defaults.hidden
  @Option(help: "Recurrent cell.") var cell = defaults.cell
  @Option(help: "Stacked recurrent layers.") var rnnLayers = defaults.rnnLayers
  @Option(help: "Image input: every step or first step only.") var imageInput = defaults.imageInput
  @Option(help: "Dropout on embeddings and hidden states.") var dropout = defaults.dropout
  @Option(
    help: """
      Start the convolutions from this file: a caption encoder file \
      (scripts/import_torchvision_vgg.py), a torchvision VGG safetensors, or a caption model. Its \
      layer list, image size, mean and std are used; the decoder, encoder fc and vocabulary are new.
      """) var encoderInit: String?
  @Flag(help: "Do not train the convolutions.") var freezeEncoder = false
  @Option(help: "Freeze the convolutions for E epochs, then train them.") var finetuneEncoderAfter: Int?
  @Option(name: .customLong("encoder-lr"), help: "The convolutions' learning rate (default: --lr).")
  var encoderLearningRate: Float?
}

struct OptimisationOptions: ParsableArguments {
  @Option(help: "Passes over the training images.") var epochs = defaults.epochs
  @Option(help: "Images per batch.") var batchSize = defaults.batchSize
  @Option(help: "Captions trained per image in a batch, sharing one encoder pass.")
  var captionsPerImage = defaults.captionsPerImage
  @Option(name: .customLong("lr"), help: "Adam learning rate.") var learningRate = defaults.learningRate
  @Option(help: "Learning-rate schedule after warm-up.") var schedule = defaults.schedule
  @Option(name: .customLong("warmup"), help: "Linear warm-up steps.") var warmupSteps = defaults.warmupSteps
  @Option(help: "Step schedule: epochs between drops.") var stepEpochs = defaults.stepEpochs
  @Option(help: "Step schedule: factor per drop.") var stepGamma = defaults.stepGamma
  @Option(help: "Decoupled weight decay (AdamW).") var weightDecay = defaults.weightDecay
  @Option(help: "Adam's β₂, the decay of its squared-gradient average (default 0.999).") var beta2: Float?
  @Option(
    help:
      "Weight of the auxiliary word loss: the image vector alone predicts which words the captions use (0: off)."
  ) var wordLoss = TrainOptions.defaultWordLoss
  @Option(
    help: """
      Weight of the auxiliary scene loss, used when the data has scenes.json (as `caption dataset \
      shapes` writes it): the image vector alone answers which shapes, colour-shape pairs, \
      positions and relations the scene holds (0: off).
      """
  ) var sceneLoss = TrainOptions.defaultSceneLoss
  @Option(
    help: """
      Weight of the auxiliary mention loss, used when the data has scenes.json: after each object \
      the caption names, the decoder's state alone answers where that object is (0: off).
      """
  ) var mentionLoss = TrainOptions.defaultMentionLoss
  @Option(
    help: """
      Weight of the image–sentence ranking loss: a bidirectional RNN embeds each caption and a \
      projection each image vector into one joint space (`caption search`, `embed`; 0: off).
      """
  ) var retrieval: Float?
  @Flag(help: "Train only the retrieval part; the --init model's captioner is kept exactly.")
  var retrievalOnly = false
  @Option(help: "The ranking loss's margin (default 0.2).") var retrievalMargin: Float?
  @Option(help: "Epochs of summed negatives before the ranking loss takes only the hardest (default 2).")
  var retrievalHardAfter: Int?
  @Option(help: "Retrieval part: recurrent cell (default gru).") var retrievalCell: CellType?
  @Option(help: "Retrieval part: word embedding size (default 64).") var retrievalEmbed: Int?
  @Option(help: "Retrieval part: hidden size of each direction (default 128).") var retrievalHidden: Int?
  @Option(help: "Retrieval part: bidirectional layers (default 1).") var retrievalLayers: Int?
  @Option(help: "Retrieval part: joint space size (default 128).") var retrievalDim: Int?
  @Option(help: "Clip the gradient's global norm to this (0: off).") var clip = defaults.clip
  @Option(help: "Seed for initialisation, shuffling and dropout.") var seed = defaults.seed
  @Option(help: "Compute threads.") var threads = defaults.threads
}

struct CheckpointOptions: ParsableArguments {
  @Option(help: "Where the best model goes (NAME.safetensors); the other files go beside it.") var out: String
  @Flag(help: "Continue the run saved beside --out.") var resume = false
  @Option(help: "Validate every N epochs.") var valEvery = defaults.valEvery
  @Option(help: "Validation images captioned for CIDEr-D at most.") var valImages = defaults.valImages
  @Option(help: "Stop after N validations without improvement (0: never).") var patience = defaults.patience
  @Option(help: "Also keep NAME.epochEEE.safetensors every K epochs (0: never).") var keepEvery =
    defaults.keepEvery
  @Option(help: "Log every N steps.") var logEvery = defaults.logEvery
  @Option(help: "Stop after N steps in all (0: no limit).") var maxSteps = defaults.maxSteps
}

extension TrainOptions {
  /// The options `train`'s flag groups hold. Every flag is named as the field it sets, which is
  /// also the field's key in the saved state, so the values go over by name: written as one JSON
  /// object and decoded. Flags and fields must match one to one (a flag without a field, or a
  /// field without a flag, is a mistake in this file).
  init(flags groups: [any ParsableArguments]) {
    var flags = FlagValues()
    let fields = Set(Mirror(reflecting: defaults).children.compactMap(\.label))
    for group in groups {
      for child in Mirror(reflecting: group).children {
        // A property wrapper's storage is `_name`; a Flag is a setting when a field has its name
        // (`--freeze-encoder`), else it says how to run (`--resume`).
        if let label = child.label, let option = child.value as? any ParsedOption {
          let name = String(label.dropFirst())
          if option is Flag<Bool> && !fields.contains(name) { continue }
          flags.values[name] = option.parsedValue
        }
      }
    }
    precondition(
      Set(flags.values.keys) == fields,
      "train: flags without a field \(Set(flags.values.keys).subtracting(fields)), "
        + "fields without a flag \(fields.subtracting(flags.values.keys))")
    let encoder = JSONEncoder()
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    let decoder = JSONDecoder()
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    do {
      self = try decoder.decode(TrainOptions.self, from: encoder.encode(flags))
    } catch {
      preconditionFailure("train: the flags do not decode as TrainOptions: \(error)")
    }
  }
}

/// An option's parsed value, whatever its type.
protocol ParsedOption {
  var parsedValue: any Encodable { get }
}

extension Option: ParsedOption where Value: Encodable {
  var parsedValue: any Encodable { wrappedValue }
}

extension Flag: ParsedOption where Value == Bool {
  /// An unset flag is an absent setting (nil), as in a state saved before the flag existed.
  var parsedValue: any Encodable { wrappedValue ? true : nil as Bool? }
}

/// Named values, encoded as one keyed object.
struct FlagValues: Encodable {
  var values: [String: any Encodable] = [:]

  struct Key: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
  }

  func encode(to encoder: Swift.Encoder) throws {
    var container = encoder.container(keyedBy: Key.self)
    for (name, value) in values { try container.encode(value, forKey: Key(stringValue: name)) }
  }
}

/// `--layers 32,32,M,64`: the encoder's layer list.
struct EncoderLayers: ExpressibleByArgument, Encodable {
  var layers: [EncoderLayer]

  init(_ layers: [EncoderLayer]) { self.layers = layers }

  init?(argument: String) {
    guard let layers = EncoderLayer.parseList(argument) else { return nil }
    self.layers = layers
  }

  var defaultValueDescription: String { layers.map(\.description).joined(separator: ",") }

  func encode(to encoder: Swift.Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(layers)
  }
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
      "epoch \(p.epoch)/\(p.epochs) [\(bar)] \(p.batch)/\(p.batchesPerEpoch)" + eta
        + String(cFormat: " loss %.3f %.0f img/s", p.loss, p.imagesPerSecond))
  }

  func clear() { line.clear() }
}
