import CShims
import FoundationEssentials
import Glibc

/// Everything a training run holds between steps: what `--resume` restores exactly.
final class TrainingSession {
  let options: TrainOptions
  let files: TrainingFiles
  let vocabulary: Vocabulary
  let model: CaptionModel
  /// The caption loss and the auxiliary terms that are on.
  let objective: TrainingObjective
  /// Adam over everything trained but the convolutions (decoder, `encoder.fc`, the terms' heads).
  let optimizer: Adam
  /// Adam over the convolutions (`encoder.conv*`): its own learning rate (`--encoder-lr`) and step
  /// count, which stops while they are frozen.
  let encoderOptimizer: Adam
  /// The names and parameters of each optimiser, in `objective.namedTrainableParameters`' order.
  let namedParameters: [(String, Parameter)]
  let namedConvolutionParameters: [(String, Parameter)]
  let trainLoader: BatchLoader
  let valLoader: BatchLoader?
  let valImages: [DatasetImage]
  let trainImages: [DatasetImage]
  /// The frozen encoder's features (SPEC §8), open while the convolutions are frozen.
  var featureCache: FeatureCache?
  /// Set when the feature cache could not be written: training goes on without storing.
  var featureCacheFailed = false
  /// The processes of a data-parallel run; rank 0 alone writes files.
  let group: any TrainingGroup
  /// Workspaces of the data-parallel exchange (the gradients' buckets; rank 0's gathered counts).
  var gradientBuckets: GradientBuckets?
  var gatheredTotals: [Double] = []

  // Counters and generators: saved in the state file.
  var step = 0
  var epoch = 0
  var batchInEpoch = 0
  var dropoutGenerator: SeededGenerator
  var bestScore = -Double.infinity
  var bestEpoch: Int? = nil
  var bestMetrics: [String: Double] = [:]
  var epochsWithoutImprovement = 0
  /// The steps since the last logged line.
  var interval: LoggedInterval
  /// Σ training loss and steps of the epoch so far: they choose the best model when there is no
  /// validation split.
  var epochLoss = 0.0
  var epochSteps = 0
  /// Wall time spent in the current epoch before this process took it up (from the state).
  var epochSeconds = 0.0
  /// When this process took up the current epoch.
  var epochStarted = Date()
  /// The step of the latest model and state saved (or resumed from): the last finite checkpoint.
  var savedStep: Int?
  /// The familiarity calibration (SPEC §3c) of the last validation's images, and the step of the
  /// weights it was measured with: a model saved at that step carries it.
  var familiarity: (step: Int, calibration: Familiarity)?
  /// The rerank weight λ (SPEC §3b) chosen on the last validation's images, and its step, likewise.
  var rerankCalibration: (step: Int, calibration: RerankCalibration)?
  /// Per-channel normalisation: ImageNet's for a new model, the model file's with --init or --resume.
  let mean: [Float]
  let std: [Float]

  private init(
    options: TrainOptions, files: TrainingFiles, prepared: PreparedCaptions, scenesPath: String?,
    model: CaptionModel, mean: [Float] = Preprocess.imagenetMean, std: [Float] = Preprocess.imagenetStd,
    log: @escaping (String) -> Void, status: (String) -> Void, group: any TrainingGroup
  ) throws {
    self.group = group
    self.options = options
    self.mean = mean
    self.std = std
    self.files = files
    self.vocabulary = prepared.vocabulary
    self.model = model
    var terms: [any ObjectiveTerm] = []
    // With --retrieval-only the captioner does not train, so neither do the terms that train it
    // (the word, scene and mention losses): they are left out rather than computed for nothing.
    let retrievalOnly = options.retrievalOnly == true
    if !retrievalOnly, let weight = options.wordLoss, weight > 0 {
      // Drawn from its own seed, so the model's weights do not depend on whether it is on.
      var generator = SeededGenerator(seed: options.seed &+ 0x3057_0D5)
      let wordLoss = WordLoss(
        imageSize: model.config.dv, vocabularySize: model.config.vocabSize, weight: weight)
      wordLoss.auxiliary.initialize(using: &generator)
      terms.append(wordLoss)
    }
    // The shapes data's terms, from its scenes file (read once for both).
    let (sceneWeight, mentionWeight) = (options.sceneLoss ?? 0, options.mentionLoss ?? 0)
    if !retrievalOnly, let scenesPath, sceneWeight > 0 || mentionWeight > 0 {
      status("reading \(scenesPath)")
      let scenes = try Scenes.load(path: scenesPath)
      try TrainingSession.stopIfInterrupted()
      terms += try ShapesObjective.terms(
        sceneWeight: sceneWeight, mentionWeight: mentionWeight, scenes: scenes,
        scenesPath: scenesPath, imageIds: prepared.train.map(\.id), vocabulary: prepared.vocabulary,
        imageSize: model.config.dv, hiddenSize: model.config.hidden, seed: options.seed, log: log)
    }
    if let weight = options.retrieval, weight > 0, let retrieval = model.retrieval {
      let term = RetrievalTerm(
        model: retrieval, weight: weight,
        margin: options.retrievalMargin ?? TrainOptions.defaultRetrievalMargin)
      if group.size > 1 { term.group = group }
      terms.append(term)
    }
    objective = TrainingObjective(model: model, terms: terms, captionerFrozen: retrievalOnly)
    interval = LoggedInterval(terms: terms.count)
    let isConvolution: ((String, Parameter)) -> Bool = { $0.0.hasPrefix("encoder.conv") }
    if retrievalOnly {
      // the captioner's tensors are kept exactly: only the retrieval part is in an optimiser
      namedParameters = objective.namedTrainableParameters.filter { $0.0.hasPrefix("retrieval.") }
      namedConvolutionParameters = []
    } else {
      namedParameters = objective.namedTrainableParameters.filter { !isConvolution($0) }
      namedConvolutionParameters = objective.namedTrainableParameters.filter(isConvolution)
    }
    optimizer = Adam(
      parameters: namedParameters.map(\.1), learningRate: options.learningRate,
      beta2: options.beta2 ?? 0.999, weightDecay: options.weightDecay)
    encoderOptimizer = Adam(
      parameters: namedConvolutionParameters.map(\.1),
      learningRate: options.encoderLearningRate ?? options.learningRate, beta2: options.beta2 ?? 0.999,
      weightDecay: options.weightDecay)
    dropoutGenerator = SeededGenerator(seed: options.seed &+ 0x5EED)

    log("training captions: \(prepared.trainSummary)")
    let size = model.config.imageSize  // the model's own (with --init, the file's)
    let load: @Sendable (String) throws -> RGBImage = { path in try Preprocess.load(path: path, size: size) }
    let onSkip: @Sendable (String, String) -> Void = { path, reason in
      let line = "caption: skipped " + CaptionError(.unreadable, path: path, reason).description  // escaped
      StandardError.write(line + "\n")
    }
    trainLoader = try BatchLoader(
      images: prepared.train, captions: prepared.trainCaptions, batchSize: options.batchSize,
      captionsPerImage: options.captionsPerImage, imageSize: size, mean: mean, std: std, shuffle: true,
      seed: options.seed, workers: options.workers,
      cachePath: options.cache.map { $0 + (group.size > 1 ? ".train.rank\(group.rank)" : ".train") },
      shard: LoaderShard(rank: group.rank, ranks: group.size), load: load, onSkip: onSkip)
    trainImages = prepared.train
    valImages = Array(prepared.val.prefix(options.valImages))
    if valImages.isEmpty {
      valLoader = nil
      log("no validation split: the best model is chosen by training loss")
    } else {
      valLoader = try BatchLoader(
        images: valImages, captions: Array(prepared.valCaptions.prefix(valImages.count)),
        batchSize: options.batchSize,
        captionsPerImage: 1, imageSize: size, mean: mean, std: std, shuffle: false,
        seed: options.seed, workers: options.workers,
        cachePath: options.cache.map { $0 + (group.size > 1 ? ".val.rank\(group.rank)" : ".val") },
        load: load, onSkip: onSkip)
    }
  }

  /// Set-up stops here on Ctrl-C/SIGTERM, with nothing saved.
  static func stopIfInterrupted() throws {
    if caption_interrupt_requested() != 0 { throw Interrupted() }
  }

  /// A new run: the vocabulary from the training captions (or the `--init` model's), fresh weights.
  /// The status line of caption preparation.
  static func preparingProgress(_ status: @escaping (String) -> Void) -> (Int, Int) -> Void {
    { status("preparing captions \($0)/\($1) images") }
  }

  /// `status` names each phase before the first step (loading, preparing captions), for a terminal.
  static func start(
    options: TrainOptions, files: TrainingFiles, log: @escaping (String) -> Void,
    status: @escaping (String) -> Void = { _ in }, group: any TrainingGroup = SingleProcess()
  ) throws -> TrainingSession {
    try options.validate()
    status("loading \(options.data)")
    let dataset = try Dataset.load(
      data: options.data, images: options.images, valData: options.valData,
      trainList: options.trainList, valList: options.valList, testList: options.testList)
    try stopIfInterrupted()
    var options = options
    if dataset.scenesPath == nil, (options.sceneLoss ?? 0) > 0 || (options.mentionLoss ?? 0) > 0 {
      log("no scenes.json beside the training captions: the scene and mention losses are off")
      options.sceneLoss = 0  // saved so, for --resume
      options.mentionLoss = 0
    }
    if dataset.scenesPath == nil {
      let applied = options.applyPhotoDefaults()
      if !applied.isEmpty {
        log(
          "no scenes.json: the defaults for photos apply (docs/photos.md): " + applied.joined(separator: " "))
      }
    }
    let preparing = preparingProgress(status)
    let prepared: PreparedCaptions
    let model: CaptionModel
    var (mean, std) = (Preprocess.imagenetMean, Preprocess.imagenetStd)
    if let initPath = options.initModel {
      let file = try ModelFile.load(path: initPath)
      (mean, std) = (file.mean, file.std)
      try TrainingMemory(config: file.config, options: options).check()
      prepared = try PreparedCaptions.prepare(
        dataset, minCount: options.minCount, maxLength: options.maxLength, vocabulary: file.vocabulary,
        data: options.data, progress: preparing)
      var config = file.config
      let addsRetrieval = (options.retrieval ?? 0) > 0 && config.retrieval == nil
      if addsRetrieval { config.retrieval = options.retrievalArchitecture }
      model = CaptionModel(config: config)
      if addsRetrieval { model.retrieval?.initialize(seed: options.seed) }
      try model.adopt(tensors: file.tensors, path: initPath, keepingNewRetrieval: addsRetrieval)
      log(
        "starting from \(initPath) (its vocabulary and architecture)"
          + (addsRetrieval ? "; its retrieval part is new" : ""))
    } else {
      var encoderFile: EncoderFile? = nil
      if let path = options.encoderInit {
        status("reading \(path)")
        let file = try EncoderFile.load(path: path)
        try options.adoptEncoder(file, path: path)
        (mean, std) = (file.mean, file.std)
        encoderFile = file
      }
      prepared = try PreparedCaptions.prepare(
        dataset, minCount: options.minCount, maxLength: options.maxLength, data: options.data,
        progress: preparing)
      try TrainingMemory(config: options.modelConfig(vocabSize: prepared.vocabulary.count), options: options)
        .check()
      model = CaptionModel(config: options.modelConfig(vocabSize: prepared.vocabulary.count))
      var generator = SeededGenerator(seed: options.seed)
      model.initialize(using: &generator)
      if let encoderFile, let path = options.encoderInit {
        encoderFile.copyConvolutions(into: model.encoder)
        let name = encoderFile.torchvisionName.map { " " + $0 } ?? ""
        log(
          "convolutions from \(path) (\(encoderFile.source.rawValue)\(name), \(encoderFile.imageSize) px, "
            + "its mean and std); the decoder, encoder fc and vocabulary are new")
      }
    }
    try stopIfInterrupted()
    if group.isWriter { try AtomicFile.write(Data(), to: files.log) }  // a new run, a new log
    return try TrainingSession(
      options: options, files: files, prepared: prepared, scenesPath: dataset.scenesPath, model: model,
      mean: mean, std: std, log: log, status: status, group: group)
  }

  /// The run whose latest model and state are beside `files.best`. Its saved options hold, except
  /// how the work is run (threads, workers, log interval, step limit), taken from `current`.
  static func resume(
    files: TrainingFiles, overriding current: TrainOptions, log: @escaping (String) -> Void,
    status: @escaping (String) -> Void = { _ in }, group: any TrainingGroup = SingleProcess()
  ) throws -> TrainingSession {
    let state = try Safetensors.read(path: files.state)
    func meta(_ key: String) throws -> String {
      guard let value = state.metadata[key] else {
        throw CaptionError(.badModel, path: files.state, "missing \(key) in the training state")
      }
      return value
    }
    guard state.metadata["format"] == "caption-train-state" else {
      throw CaptionError(.badModel, path: files.state, "not a caption training state")
    }
    var options: TrainOptions
    do {
      options = try JSONDecoder().decode(TrainOptions.self, from: Data(try meta("options").utf8))
    } catch let error as CaptionError {
      throw error
    } catch let error as DecodingError {
      throw CaptionError(.badModel, path: files.state, "options: \(CaptionError.decodingReason(error))")
    } catch {
      throw CaptionError(.badModel, path: files.state, "the options in the training state do not decode")
    }
    options.threads = current.threads
    options.workers = current.workers
    options.logEvery = current.logEvery
    options.maxSteps = current.maxSteps
    // Where the features are cached changes no result: the command line's, when it says.
    if current.featureCache != nil || current.noFeatureCache == true {
      (options.featureCache, options.noFeatureCache) = (current.featureCache, current.noFeatureCache)
    }
    /// A saved count: a whole number, at least 0.
    func count(_ key: String) throws -> Int {
      let text = try meta(key)
      guard let value = Int(text), value >= 0 else {
        throw CaptionError(
          .badModel, path: files.state, "\(key) in the training state is not a count: \"\(text.prefix(40))\"")
      }
      return value
    }
    let savedStep = try count("step")
    // The model's configuration, vocabulary and normalisation, which a run never changes.
    let latest = try ModelFile.load(path: files.latest)
    // The weights of `savedStep`: saved in the state itself, so that the state is whole even when a
    // save was cut short after the latest model was replaced; a state without them (older) is
    // paired with the latest model by its step.
    if let name = state.nonFinite.first(where: { $0.hasPrefix(TrainingSession.weightPrefix) }) {
      throw CaptionError(.badModel, path: files.state, "tensor \"\(name)\" holds a value that is not finite")
    }
    var weights: [String: Tensor] = [:]
    for (name, tensor) in state.tensors where name.hasPrefix(TrainingSession.weightPrefix) {
      weights[String(name.dropFirst(TrainingSession.weightPrefix.count))] = tensor
    }
    if weights.isEmpty {
      guard latest.provenanceStep == savedStep else {
        throw CaptionError(.badModel, path: files.state, "the state does not match \(files.latest)")
      }
      weights = latest.tensors
    } else if latest.provenanceStep != savedStep {
      log(
        "\(files.latest) is from step \(latest.provenanceStep.map(String.init) ?? "?") but the state from step "
          + "\(savedStep) (a save was cut short): resuming from the state")
    }
    status("loading \(options.data)")
    let dataset = try Dataset.load(
      data: options.data, images: options.images, valData: options.valData,
      trainList: options.trainList, valList: options.valList, testList: options.testList)
    try stopIfInterrupted()
    try TrainingMemory(config: latest.config, options: options).check()
    let model = CaptionModel(config: latest.config)
    try model.adopt(tensors: weights, path: files.state)
    let prepared = try PreparedCaptions.prepare(
      dataset, minCount: options.minCount, maxLength: options.maxLength, vocabulary: latest.vocabulary,
      data: options.data, progress: preparingProgress(status))
    try stopIfInterrupted()
    let session = try TrainingSession(
      options: options, files: files, prepared: prepared, scenesPath: dataset.scenesPath, model: model,
      mean: latest.mean, std: latest.std, log: log, status: status, group: group)
    func malformed(_ key: String) -> CaptionError {
      CaptionError(
        .badModel, path: files.state,
        "\(key) in the training state is malformed: \"\((state.metadata[key] ?? "").prefix(40))\"")
    }
    session.step = savedStep
    session.savedStep = savedStep
    session.epoch = try count("epoch")
    session.batchInEpoch = try count("batch")
    guard let rng = UInt64(try meta("rng")) else { throw malformed("rng") }
    session.dropoutGenerator.state = rng
    guard let bestScore = Double(try meta("best_score")), !bestScore.isNaN else {
      throw malformed("best_score")
    }
    session.bestScore = bestScore
    if let bestEpoch = state.metadata["best_epoch"] {
      guard let value = Int(bestEpoch), value >= 1 else { throw malformed("best_epoch") }
      session.bestEpoch = value
    }
    session.epochsWithoutImprovement = try count("stale_epochs")
    if let best = state.metadata["best_metrics"] {
      guard case .object(let metrics)? = try? JSONValue.parse(Array(best.utf8), file: files.state) else {
        throw malformed("best_metrics")
      }
      session.bestMetrics = [:]
      for (key, value) in metrics.members {
        guard let number = value.doubleValue else { throw malformed("best_metrics") }
        session.bestMetrics[key] = number
      }
    }
    try session.optimizer.restore(
      from: state.tensors, names: session.namedParameters.map { $0.0 }, path: files.state)
    try session.encoderOptimizer.restore(
      from: state.tensors, names: session.namedConvolutionParameters.map { $0.0 }, path: files.state)
    for (name, parameter) in session.objective.termParameters {
      guard let saved = state.tensors[name], saved.shape == parameter.shape else {
        throw CaptionError(.badModel, path: files.state, "\(name) is missing or has the wrong shape")
      }
      parameter.value.copy(from: saved)
    }
    session.optimizer.stepCount = try count("adam_steps")
    // One optimiser before the convolutions had their own: then both took every step.
    session.encoderOptimizer.stepCount =
      state.metadata["encoder_adam_steps"] == nil
      ? session.optimizer.stepCount : try count("encoder_adam_steps")
    if let saved = state.metadata["epoch_seconds"] {
      guard let seconds = Double(saved), seconds >= 0, seconds.isFinite else {
        throw malformed("epoch_seconds")
      }
      session.epochSeconds = seconds
    }
    if let saved = state.metadata["log_interval"] {
      guard let restored = LoggedInterval(saved: saved, terms: session.objective.terms.count) else {
        throw CaptionError(.badModel, path: files.state, "log_interval in the training state is malformed")
      }
      session.interval = restored
    }
    if let saved = state.metadata["epoch_loss"] {
      let fields = saved.split(separator: " ")
      guard fields.count == 2, let loss = Double(fields[0]), let steps = Int(fields[1]), steps >= 0 else {
        throw CaptionError(.badModel, path: files.state, "epoch_loss in the training state is malformed")
      }
      (session.epochLoss, session.epochSteps) = (loss, steps)
    }
    // Keep the log up to the resumed step; later lines are appended from here.
    if group.isWriter { try TrainingLog.truncate(files.log, toStep: savedStep) }
    log("resuming \(files.latest) at epoch \(session.epoch + 1), step \(savedStep)")
    return session
  }
}
