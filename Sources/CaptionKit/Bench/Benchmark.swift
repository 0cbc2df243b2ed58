import Foundation

/// `caption bench` (SPEC §7): training and captioning throughput on random data of a fixed shape.
public struct BenchmarkOptions: Sendable {
  public var imageSize = 64
  public var layers: [EncoderLayer] = [
    .conv(32), .conv(32), .maxPool, .conv(64), .conv(64), .maxPool, .conv(128), .conv(128), .maxPool,
    .conv(256), .conv(256), .maxPool,
  ]
  public var dv = 256
  public var embed = 256
  public var hidden = 512
  public var vocab = 1000
  public var length = 16
  public var batch = 32
  public var cell: CellType = .lstm
  public var threads = 2
  public var warmupSteps = 3
  public var timedSteps = 10
  public var profile = false

  public init() {}

  public var config: ModelConfig {
    ModelConfig(
      imageSize: imageSize, layers: layers, dv: dv, embed: embed, hidden: hidden, cell: cell,
      rnnLayers: 1, vocabSize: vocab)
  }
}

public enum Benchmark {
  /// Runs both measurements; `log` gets progress and, last, the two SPEC lines.
  public static func run(_ options: BenchmarkOptions, log: (String) -> Void) {
    BLAS.setThreads(options.threads)
    let config = options.config
    let model = CaptionModel(config: config)
    var generator = SeededGenerator(seed: 1)
    model.initialize(using: &generator)
    let optimizer = Adam(parameters: model.parameters, learningRate: 1e-4)

    // Random normalised images and random captions of exactly `length` decoder steps.
    let (b, s, t) = (options.batch, options.imageSize, options.length)
    let images = Tensor(zeros: [b, 3, s, s])
    for i in 0..<images.count { images[i] = Float.random(in: -2...2, using: &generator) }
    var inputs = [Int](repeating: 0, count: t * b)
    var targets = [Int](repeating: 0, count: t * b)
    for r in 0..<b {
      var previous = Vocabulary.start
      for step in 0..<t {
        let word = step == t - 1 ? Vocabulary.end : Int.random(in: 4..<options.vocab, using: &generator)
        inputs[step * b + r] = previous
        targets[step * b + r] = word
        previous = word
      }
    }
    log(
      "bench: image \(s), layers \(config.layers.map(\.description).joined(separator: ",")), dv \(options.dv), "
        + "embed \(options.embed), hidden \(options.hidden), vocab \(options.vocab), length \(t), "
        + "batch \(b), cell \(options.cell.rawValue), threads \(options.threads)")

    var stepTimes: [Double] = []
    for index in 0..<(options.warmupSteps + options.timedSteps) {
      let start = DispatchTime.now().uptimeNanoseconds
      zeroGradients(model.parameters)
      _ = model.forward(
        images: images, captionsPerImage: 1, steps: t, inputTokens: inputs, targetTokens: targets,
        training: true, generator: &generator)
      model.backward()
      optimizer.step(learningRate: 1e-4)
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      if index >= options.warmupSteps { stepTimes.append(seconds) }
    }
    let trainImagesPerSecond = Double(b) / median(stepTimes)

    if options.profile {
      profile(model: model, images: images, inputs: inputs, targets: targets, options: options, log: log)
    }

    // describe: one image, encoder plus exactly `length` greedy steps.
    let one = images.view(shape: [1, 3, s, s])
    let logits = Tensor(zeros: [1, options.vocab])
    var describeTimes: [Double] = []
    for index in 0..<(options.warmupSteps + options.timedSteps * 3) {
      let start = DispatchTime.now().uptimeNanoseconds
      let v = model.encode(one)
      var state = model.initialState(imageVectors: v)
      var token = Vocabulary.start
      for _ in 0..<t {
        model.step(tokens: [token], state: &state, logits: logits)
        var best = 4
        for j in 4..<options.vocab where logits[j] > logits[best] { best = j }
        token = best
      }
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      if index >= options.warmupSteps { describeTimes.append(seconds) }
    }
    log(String(format: "train_images_per_s=%.1f", trainImagesPerSecond))
    log(String(format: "describe_ms=%.2f", median(describeTimes) * 1000))
  }

  /// Time of each part of a training step, medians over the timed steps.
  static func profile(
    model: CaptionModel, images: Tensor, inputs: [Int], targets: [Int], options: BenchmarkOptions,
    log: (String) -> Void
  ) {
    var parts: [String: [Double]] = [:]
    var generator = SeededGenerator(seed: 2)
    func time(_ name: String, _ body: () -> Void) {
      let start = DispatchTime.now().uptimeNanoseconds
      body()
      parts[name, default: []].append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    let optimizer = Adam(parameters: model.parameters, learningRate: 1e-4)
    for _ in 0..<options.timedSteps {
      zeroGradients(model.parameters)
      var v = Tensor(zeros: [0])
      time("encoder forward") { v = model.encoder.forward(images) }
      let (t, b) = (options.length, options.batch)
      var x = Tensor(zeros: [0])
      time("embedding forward") { x = model.embed.forward(tokens: inputs) }
      var h = Tensor(zeros: [0])
      time("recurrent forward") {
        h = model.rnn.forward(inputs: x.view(shape: [t, b, options.embed]), image: v)
      }
      var logits = Tensor(zeros: [0])
      time("output layer forward") { logits = model.out.forward(h.view(shape: [t * b, options.hidden])) }
      time("softmax cross-entropy") {
        _ = model.crossEntropy.forward(logits: logits, targets: targets, ignoreIndex: 0)
      }
      var dLogits = Tensor(zeros: [0])
      time("softmax backward") { dLogits = model.crossEntropy.backward() }
      var dh = Tensor(zeros: [0])
      time("output layer backward") { dh = model.out.backward(dLogits)! }
      var dx = Tensor(zeros: [0])
      var dv = Tensor(zeros: [0])
      time("recurrent backward") {
        (dx, dv) = model.rnn.backward(outputGrad: dh.view(shape: [t, b, options.hidden]))
      }
      time("embedding backward") { model.embed.backward(dx.view(shape: [t * b, options.embed])) }
      time("encoder backward") { model.encoder.backward(dv) }
      time("optimizer step") { optimizer.step(learningRate: 1e-4) }
      _ = generator.next()
    }
    let order = [
      "encoder forward", "encoder backward", "embedding forward", "embedding backward", "recurrent forward",
      "recurrent backward", "output layer forward", "output layer backward", "softmax cross-entropy",
      "softmax backward", "optimizer step",
    ]
    let total = order.reduce(0.0) { $0 + median(parts[$1] ?? [0]) }
    for name in order {
      let seconds = median(parts[name] ?? [0])
      log(
        String(format: "  %-24@ %8.2f ms  %5.1f%%", name as NSString, seconds * 1000, seconds / total * 100))
    }
    log(String(format: "  %-24@ %8.2f ms", "total" as NSString, total * 1000))
  }

  static func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    return sorted.count % 2 == 1
      ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
  }
}
