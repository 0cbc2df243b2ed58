import FoundationEssentials
import Glibc

/// Everything `caption train` can be told, grouped as its help groups them. Saved in the training
/// state so that `--resume` continues with exactly the same settings.
public struct TrainOptions: Codable, Equatable, Sendable {
  // Data
  public var data: String
  public var images: String? = nil
  public var valData: String? = nil
  public var trainList: String? = nil
  public var valList: String? = nil
  public var testList: String? = nil
  public var cache: String? = nil
  /// The feature cache of a frozen encoder (nil: `NAME.features` beside `out`; SPEC §8).
  public var featureCache: String? = nil
  /// No feature cache: a frozen encoder runs on the pixels every epoch (nil: false).
  public var noFeatureCache: Bool? = nil
  public var workers: Int = 2
  public var minCount: Int = 2
  public var maxLength: Int = 20

  // Model
  public var initModel: String? = nil
  public var imageSize: Int = 64
  public var layers: [EncoderLayer] = [
    .conv(16), .conv(16), .maxPool, .conv(32), .conv(32), .maxPool, .conv(64), .conv(64), .maxPool,
    .conv(128), .maxPool,
  ]
  public var pool: PoolMode = .flatten
  public var dv: Int = 256
  public var embed: Int = 128
  public var hidden: Int = 256
  public var cell: CellType = .lstm
  public var rnnLayers: Int = 1
  public var imageInput: ImageInput = .every
  public var dropout: Float = 0.1
  /// Pretrained convolutions (an encoder file, a torchvision VGG, a caption model; `EncoderFile`):
  /// their layer list, image size, mean and std replace `layers` and `imageSize`.
  public var encoderInit: String? = nil
  /// The convolutions are not trained (nil: false; optional so that older states still decode).
  public var freezeEncoder: Bool? = nil
  /// The convolutions are frozen for this many epochs, then trained (nil: never frozen).
  public var finetuneEncoderAfter: Int? = nil
  /// The convolutions' own Adam learning rate (nil: `learningRate`), on the same schedule.
  public var encoderLearningRate: Float? = nil

  // Optimisation
  public var epochs: Int = 14
  public var batchSize: Int = 32
  public var captionsPerImage: Int = 2
  public var learningRate: Float = 2e-3
  public var schedule: LearningRateSchedule = .cosine
  public var warmupSteps: Int = 200
  public var stepEpochs: Int = 10
  public var stepGamma: Float = 0.5
  public var weightDecay: Float = 0
  /// Adam's β₂ (nil: 0.999). Optional so that states saved before it existed still decode.
  public var beta2: Float? = nil
  /// Weight of the auxiliary word loss on the image vector (WordLoss; nil or 0: off). `caption
  /// train` sets `defaultWordLoss` unless told otherwise; nil keeps older saved states decoding.
  public var wordLoss: Float? = nil
  public static let defaultWordLoss: Float = 10
  /// Weight of the auxiliary scene loss (SceneLoss; nil or 0: off), used when the training data
  /// has scenes.json (off otherwise). `caption train` sets `defaultSceneLoss` unless told otherwise.
  public var sceneLoss: Float? = nil
  public static let defaultSceneLoss: Float = 3
  /// Weight of the auxiliary mention loss on the decoder's states (MentionLoss; nil or 0: off), used
  /// when the training data has scenes.json. `caption train` sets `defaultMentionLoss` unless told
  /// otherwise; nil keeps older saved states decoding.
  public var mentionLoss: Float? = nil
  public static let defaultMentionLoss: Float = 0.05
  /// Weight of the image–sentence ranking loss (RetrievalTerm; nil or 0: off). On, the model gains
  /// the retrieval part (`retrievalArchitecture`, or the `--init` model's own).
  public var retrieval: Float? = nil
  /// Only the retrieval part trains; the captioner's tensors are kept exactly (needs `initModel`).
  public var retrievalOnly: Bool? = nil
  /// The ranking loss's margin (nil: `defaultRetrievalMargin`).
  public var retrievalMargin: Float? = nil
  public static let defaultRetrievalMargin: Float = 0.2
  /// From this epoch on (0-based: after this many epochs) the ranking loss takes the hardest
  /// negative only (nil: `defaultRetrievalHardAfter`).
  public var retrievalHardAfter: Int? = nil
  public static let defaultRetrievalHardAfter = 2
  /// The retrieval part's cell and sizes for a model that does not have one yet (nil: RetrievalConfig's
  /// defaults).
  public var retrievalCell: CellType? = nil
  public var retrievalEmbed: Int? = nil
  public var retrievalHidden: Int? = nil
  public var retrievalLayers: Int? = nil
  public var retrievalDim: Int? = nil

  /// The retrieval part these options describe, for a model that does not have one yet.
  public var retrievalArchitecture: RetrievalConfig {
    let base = RetrievalConfig()
    return RetrievalConfig(
      cell: retrievalCell ?? base.cell, embed: retrievalEmbed ?? base.embed,
      hidden: retrievalHidden ?? base.hidden, layers: retrievalLayers ?? base.layers,
      dim: retrievalDim ?? base.dim)
  }
  public var clip: Float = 5
  public var seed: UInt64 = 1
  public var threads: Int = 2

  // Validation and checkpoints
  public var out: String
  public var valEvery: Int = 1
  public var valImages: Int = 500
  public var patience: Int = 0
  public var keepEvery: Int = 0
  public var logEvery: Int = 20
  /// Stop after this many optimiser steps in total (0: no limit); for tests and quick looks.
  public var maxSteps: Int = 0

  public init(data: String, out: String) {
    self.data = data
    self.out = out
  }

  /// Whether the convolutions are frozen in `epoch` (0-based).
  public func encoderFrozen(inEpoch epoch: Int) -> Bool {
    if freezeEncoder == true { return true }
    if let after = finetuneEncoderAfter { return epoch < after }
    return false
  }

  /// The defaults for data without scenes.json (photos: Flickr8k, COCO; docs/photos.md says why),
  /// each applied only where the option still holds the shapes default (a flag given with that
  /// very value cannot be told apart). Returns the settings applied, as flags.
  public mutating func applyPhotoDefaults() -> [String] {
    let shapes = TrainOptions(data: "", out: "")
    var applied: [String] = []
    if minCount == shapes.minCount {
      minCount = 5
      applied.append("--min-count 5")
    }
    if learningRate == shapes.learningRate {
      learningRate = 4e-4
      applied.append("--lr 0.0004")
    }
    if epochs == shapes.epochs {
      epochs = 20
      applied.append("--epochs 20")
    }
    if encoderInit != nil {
      // Pretrained convolutions: frozen (their features cached), averaged to 512 numbers.
      if freezeEncoder == nil && finetuneEncoderAfter == nil {
        freezeEncoder = true
        applied.append("--freeze-encoder")
      }
      if pool == shapes.pool {
        pool = .avg
        applied.append("--pool avg")
      }
      if finetuneEncoderAfter != nil && encoderLearningRate == nil {
        encoderLearningRate = 1e-5
        applied.append("--encoder-lr 1e-5")
      }
    }
    return applied
  }

  /// Takes the layer list and image size of pretrained convolutions (`--encoder-init`); a
  /// `--layers` or `--image-size` other than the default that differs from the file's is an error
  /// naming the file.
  public mutating func adoptEncoder(_ file: EncoderFile, path: String) throws {
    let defaults = TrainOptions(data: "", out: "")
    func list(_ layers: [EncoderLayer]) -> String { layers.map(\.description).joined(separator: ",") }
    if layers != defaults.layers && layers != file.layers {
      throw CaptionError(
        .badModel, path: path, "its layers \(list(file.layers)) differ from --layers \(list(layers))")
    }
    if imageSize != defaults.imageSize && imageSize != file.imageSize {
      throw CaptionError(
        .badModel, path: path, "its image size \(file.imageSize) differs from --image-size \(imageSize)")
    }
    (layers, imageSize) = (file.layers, file.imageSize)
    do {
      try modelConfig(vocabSize: 4).validate()
    } catch let error as CaptionError {
      throw CaptionError(.badModel, path: path, error.reason)
    }
  }

  /// The model configuration these options describe, for a vocabulary of `vocabSize` words.
  public func modelConfig(vocabSize: Int) -> ModelConfig {
    var config = ModelConfig(
      imageSize: imageSize, layers: layers, dv: dv, embed: embed, hidden: hidden, cell: cell,
      rnnLayers: rnnLayers, vocabSize: vocabSize, imageInput: imageInput, pool: pool, dropout: dropout)
    if (retrieval ?? 0) > 0 { config.retrieval = retrievalArchitecture }
    return config
  }

  /// Checks every value a user may get wrong (the one place `caption train` checks them); the
  /// reason names the flag. `resuming`: the data comes from the saved state.
  public func validate(resuming: Bool = false) throws {
    func fail(_ reason: String) throws -> Never {
      throw CaptionError(.invalidArgument, path: "train", reason)
    }
    if out.isEmpty { try fail("--out must name a file") }
    if data.isEmpty && !resuming { try fail("--data is required (unless --resume)") }
    if workers < 0 { try fail("--workers must not be negative") }
    if minCount < 1 { try fail("--min-count must be at least 1") }
    if maxLength < 2 || maxLength > DecodingOptions.maximumLength {
      try fail("--max-length must be from 2 to \(DecodingOptions.maximumLength)")  // validation decodes
    }
    try modelConfig(vocabSize: 4).validate(naming: { "--" + $0.replacing("_", with: "-") })
    for (flag, value) in [
      ("--epochs", epochs), ("--batch-size", batchSize), ("--captions-per-image", captionsPerImage),
      ("--step-epochs", stepEpochs), ("--threads", threads), ("--val-every", valEvery),
      ("--log-every", logEvery),
    ] where value < 1 {
      try fail("\(flag) must be at least 1")
    }
    for (flag, value) in [
      ("--warmup", warmupSteps), ("--val-images", valImages), ("--patience", patience),
      ("--keep-every", keepEvery), ("--max-steps", maxSteps),
    ] where value < 0 {
      try fail("\(flag) must not be negative")
    }
    if !(learningRate > 0 && learningRate.isFinite) { try fail("--lr must be positive") }
    if !(stepGamma > 0 && stepGamma.isFinite) { try fail("--step-gamma must be positive") }
    for (flag, value) in [
      ("--weight-decay", weightDecay), ("--clip", clip), ("--word-loss", wordLoss ?? 0),
      ("--scene-loss", sceneLoss ?? 0), ("--mention-loss", mentionLoss ?? 0),
      ("--retrieval", retrieval ?? 0), ("--retrieval-margin", retrievalMargin ?? 0),
    ] where !(value >= 0 && value.isFinite) {
      try fail("\(flag) must not be negative")
    }
    if let beta2, !(beta2 > 0 && beta2 < 1) { try fail("--beta2 must lie strictly between 0 and 1") }
    if encoderInit != nil && initModel != nil { try fail("--encoder-init and --init exclude each other") }
    if freezeEncoder == true && finetuneEncoderAfter != nil {
      try fail("--freeze-encoder and --finetune-encoder-after exclude each other")
    }
    if let after = finetuneEncoderAfter, after < 0 {
      try fail("--finetune-encoder-after must not be negative")
    }
    try retrievalArchitecture.validate()
    if let after = retrievalHardAfter, after < 0 { try fail("--retrieval-hard-after must not be negative") }
    if retrievalOnly == true {
      if initModel == nil && !resuming {
        try fail("--retrieval-only needs --init MODEL (the captioner it keeps)")
      }
      if (retrieval ?? 0) <= 0 { try fail("--retrieval-only needs --retrieval W above 0") }
    }
    if let rate = encoderLearningRate, !(rate > 0 && rate.isFinite) {
      try fail("--encoder-lr must be positive")
    }
    if featureCache != nil && noFeatureCache == true {
      try fail("--feature-cache and --no-feature-cache exclude each other")
    }
  }
}

/// How the learning rate moves over training (after a linear warm-up of `warmupSteps`).
public enum LearningRateSchedule: String, Codable, CaseIterable, Sendable {
  case constant, cosine, step

  /// The rate at optimiser step `step` (0-based) of `totalSteps`, `epoch` being the current epoch.
  public func rate(base: Float, step: Int, totalSteps: Int, epoch: Int, options: TrainOptions) -> Float {
    let warmup = Float(min(step + 1, max(options.warmupSteps, 1))) / Float(max(options.warmupSteps, 1))
    switch self {
    case .constant:
      return base * warmup
    case .cosine:
      // From base down to 5% of base at the last step: base · (0.05 + 0.95 · (1 + cos(π·p)) / 2).
      let progress = Float(step) / Float(max(totalSteps - 1, 1))
      return base * warmup * (0.05 + 0.95 * (1 + cos(Float.pi * min(progress, 1))) / 2)
    case .step:
      let drops = Float(epoch / max(options.stepEpochs, 1))
      return base * warmup * pow(options.stepGamma, drops)
    }
  }
}
