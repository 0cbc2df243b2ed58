import Dispatch
import FoundationEssentials
import Glibc

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

/// Named configurations of `caption bench --preset` (SPEC §7), so that each row of the performance
/// table is one flag; flags given beside a preset replace its values one by one.
public enum BenchmarkPreset: String, CaseIterable, Sendable {
  /// SPEC §7's defaults.
  case standard = "default"
  /// SPEC §7's layers at 128 px.
  case standard128 = "default-128"
  /// VGG-11's convolutions at 224 px.
  case vgg11 = "vgg11-224"
  /// VGG-16's convolutions at 224 px.
  case vgg16 = "vgg16-224"

  /// The preset's options. The VGG presets train on batches of 8 (what fits a CPU step of a few
  /// seconds) and extract features, `forwardOnly`, in batches of 32.
  public func options(forwardOnly: Bool) -> BenchmarkOptions {
    var options = BenchmarkOptions()
    let vggBatch = forwardOnly ? 32 : 8
    switch self {
    case .standard:
      break
    case .standard128:
      options.imageSize = 128
    case .vgg11:
      options.imageSize = 224
      options.layers = EncoderLayer.parseList("64,M,128,M,256,256,M,512,512,M,512,512,M")!
      options.batch = vggBatch
    case .vgg16:
      options.imageSize = 224
      options.layers = EncoderLayer.parseList(
        "64,64,M,128,128,M,256,256,256,M,512,512,512,M,512,512,512,M")!
      options.batch = vggBatch
    }
    return options
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
    let images = randomImages(options, using: &generator)
    let (inputs, targets) = randomCaptions(options, using: &generator)
    log(
      "bench: image \(s), layers \(config.layers.map(\.description).joined(separator: ",")), dv \(options.dv), "
        + "embed \(options.embed), hidden \(options.hidden), vocab \(options.vocab), length \(t), "
        + "batch \(b), cell \(options.cell.rawValue), threads \(options.threads), kernels \(PeakFlops.isaName)"
    )

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
      profile(
        model: model, optimizer: optimizer, images: images, inputs: inputs, targets: targets,
        options: options, log: log)
    }

    // describe: one image, encoder plus exactly `length` greedy steps, the weights fixed from now
    // on as in a model loaded to caption.
    model.fixWeights()
    let one = images.view(shape: [1, 3, s, s])
    let logits = Tensor(zeros: [1, options.vocab])
    var describeTimes: [Double] = []
    var encodeTimes: [Double] = []
    for index in 0..<(options.warmupSteps + options.timedSteps * 3) {
      let start = DispatchTime.now().uptimeNanoseconds
      let v = model.encode(one)
      let encoded = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      var state = model.initialState(imageVectors: v)
      var token = Vocabulary.start
      for _ in 0..<t {
        model.step(tokens: [token], state: &state, logits: logits)
        var best = 4
        for j in 4..<options.vocab where logits[j] > logits[best] { best = j }
        token = best
      }
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      if index >= options.warmupSteps {
        describeTimes.append(seconds)
        encodeTimes.append(encoded)
      }
    }
    if options.profile {
      log(
        String(
          cFormat: "  describe: encoder %.2f ms, %ld decoder steps %.2f ms (medians)",
          median(encodeTimes) * 1000, t, (median(describeTimes) - median(encodeTimes)) * 1000))
    }
    log(String(cFormat: "train_images_per_s=%.1f", trainImagesPerSecond))
    log(String(cFormat: "describe_ms=%.2f", median(describeTimes) * 1000))
  }

  /// `caption bench --forward-only`: the encoder's forward alone on a batch of `batch` random images,
  /// as feature extraction (describe, evaluate) runs it; `log` gets, last, `forward_images_per_s=`
  /// (batch / the median time of a forward, after a warm-up).
  public static func runForwardOnly(_ options: BenchmarkOptions, log: (String) -> Void) {
    BLAS.setThreads(options.threads)
    let model = CaptionModel(config: options.config)
    var generator = SeededGenerator(seed: 1)
    model.initialize(using: &generator)
    model.encoder.fixWeights()
    let images = randomImages(options, using: &generator)
    log(
      "bench --forward-only: image \(options.imageSize), layers "
        + "\(options.layers.map(\.description).joined(separator: ",")), dv \(options.dv), "
        + "batch \(options.batch), threads \(options.threads), kernels \(PeakFlops.isaName)")
    var times: [Double] = []
    for index in 0..<(options.warmupSteps + options.timedSteps) {
      let start = DispatchTime.now().uptimeNanoseconds
      _ = model.encode(images)
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      if index >= options.warmupSteps { times.append(seconds) }
    }
    if options.profile { profileForward(model: model, images: images, options: options, log: log) }
    log(String(cFormat: "forward_images_per_s=%.1f", Double(options.batch) / median(times)))
  }

  /// `--forward-only --profile`: each stage of the encoder's forward with fixed weights, medians over
  /// the timed passes, each convolution with its rate and share of the peak as in `profile` (a
  /// Winograd layer also by the multiplies its forward tile does).
  static func profileForward(
    model: CaptionModel, images: Tensor, options: BenchmarkOptions, log: (String) -> Void
  ) {
    let stages = model.encoder.stages
    var peaks = PeakFlops.Beside()
    // Per stage: its name, direct-convolution FLOPs and Winograd label and share (from the
    // first pass: every pass has the same shapes), and its time in each pass.
    var names: [String] = []
    var flops: [Double] = []
    var winograd: [(label: String, share: Double)?] = []
    var times = [[Double]](repeating: [], count: stages.count)
    let fused = model.encoder.fusedPools  // run inside the conv before: no line of their own
    for pass in 0..<options.timedSteps {
      peaks.measure()
      var x = images
      var (convIndex, poolIndex) = (0, 0)
      for (index, stage) in stages.enumerated() {
        let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let start = DispatchTime.now().uptimeNanoseconds
        switch stage {
        case .conv(let conv): x = conv.forward(x, pool: fused.contains(index + 1))
        case .maxPool(let pool): if !fused.contains(index) { x = pool.forward(x) }
        }
        times[index].append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        guard pass == 0 else { continue }
        switch stage {
        case .conv(let conv):
          names.append(
            convName(conv, convIndex, pool: fused.contains(index + 1) ? poolIndex : nil, h, w) + " fwd")
          flops.append(2.0 * Double(b * conv.outChannels * conv.inChannels * 9 * h * w))
          let tile = conv.winogradTile(height: h, width: w)
          winograd.append(
            conv.algorithm == .winograd
              ? ("Winograd F(\(tile)×\(tile))", multipliesShare(tile: tile, height: h, width: w)) : nil)
          convIndex += 1
        case .maxPool:
          names.append("maxpool\(poolIndex) \(h)×\(w) fwd")
          flops.append(0)
          winograd.append(nil)
          poolIndex += 1
        }
      }
    }
    peaks.measure()  // and once after the last step
    let peak = peaks.report(log: log)
    let total = times.reduce(0.0) { $0 + median($1) }
    for index in stages.indices where !fused.contains(index) {
      log(
        profileLine(
          names[index], seconds: median(times[index]), total: total, flop: flops[index], peak: peak,
          winograd: winograd[index]))
    }
    log("  " + pad("total", 34) + String(cFormat: "%9.2f ms", total * 1000))
  }

  /// `caption bench --from-features`: training as it runs from the feature cache, the convolutions
  /// frozen: each step copies `batch` records of F floats (what `encoder.fc` reads) from a table
  /// of 4096 random ones into the batch, then runs `fc` and the decoder forward and backward and an
  /// Adam step over what is trained. `log` gets, last, `features_train_images_per_s=` (batch / the
  /// median step time, after a warm-up).
  public static func runFromFeatures(_ options: BenchmarkOptions, log: (String) -> Void) {
    BLAS.setThreads(options.threads)
    let model = CaptionModel(config: options.config)
    var generator = SeededGenerator(seed: 1)
    model.initialize(using: &generator)
    model.encoder.trainsConvolutions = false
    let trained = model.namedParameters.filter { !$0.0.hasPrefix("encoder.conv") }.map(\.1)
    let optimizer = Adam(parameters: trained, learningRate: 1e-4)
    let (b, width, records) = (options.batch, model.encoder.fcInputWidth, 4096)
    let table = Tensor(zeros: [records, width])  // stands for the memory-mapped cache
    for i in 0..<table.count { table[i] = Float.random(in: 0...2, using: &generator) }
    let features = Tensor(zeros: [b, width])
    let (inputs, targets) = randomCaptions(options, using: &generator)
    log(
      "bench --from-features: image \(options.imageSize), layers "
        + "\(options.layers.map(\.description).joined(separator: ",")), pool \(options.config.pool.rawValue) "
        + "(\(width) features), dv \(options.dv), embed \(options.embed), hidden \(options.hidden), "
        + "vocab \(options.vocab), length \(options.length), batch \(b), threads \(options.threads)")
    var times: [Double] = []
    let none = Tensor(zeros: [0])
    for index in 0..<(options.warmupSteps + options.timedSteps) {
      let start = DispatchTime.now().uptimeNanoseconds
      for row in 0..<b {
        let record = Int.random(in: 0..<records, using: &generator)
        (features.pointer + row * width).update(from: table.pointer + record * width, count: width)
      }
      zeroGradients(trained)
      _ = model.forward(
        images: none, features: features, captionsPerImage: 1, steps: options.length, inputTokens: inputs,
        targetTokens: targets, training: true, generator: &generator)
      model.backward()
      optimizer.step(learningRate: 1e-4)
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      if index >= options.warmupSteps { times.append(seconds) }
    }
    log(String(cFormat: "features_train_images_per_s=%.1f", Double(b) / median(times)))
  }

  /// Random captions of exactly `length` decoder steps for `batch` rows: time-major inputs and targets.
  static func randomCaptions(
    _ options: BenchmarkOptions, using generator: inout SeededGenerator
  ) -> (inputs: [Int], targets: [Int]) {
    let (b, t) = (options.batch, options.length)
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
    return (inputs, targets)
  }

  /// A batch of random normalised images [batch, 3, S, S].
  static func randomImages(_ options: BenchmarkOptions, using generator: inout SeededGenerator) -> Tensor {
    let (b, s) = (options.batch, options.imageSize)
    let images = Tensor(zeros: [b, 3, s, s])
    for i in 0..<images.count { images[i] = Float.random(in: -2...2, using: &generator) }
    return images
  }

  /// Time of each part of a training step, medians over the timed steps; each conv layer with its
  /// GFLOP/s (direct-convolution count: 2·B·Cout·Cin·9·H·W per pass; backward counts two passes,
  /// one for the first layer, which needs no input gradient) and its share of the threads' measured
  /// peak (`PeakFlops`); a Winograd layer also by the multiplies it does (16 of every 36).
  /// `optimizer`: the timed steps' (its moments already touched, so that the first profiled step
  /// does not pay their pages' first writes).
  static func profile(
    model: CaptionModel, optimizer: Adam, images: Tensor, inputs: [Int], targets: [Int],
    options: BenchmarkOptions, log: (String) -> Void
  ) {
    var parts: [String: [Double]] = [:]
    var order: [String] = []
    var flops: [String: Double] = [:]
    // Winograd layers' rates are also reported by the multiplies done (`multipliesShare`), by part name.
    var winogradShare: [String: Double] = [:]
    var peaks = PeakFlops.Beside()
    func time(_ name: String, flop: Double = 0, _ body: () -> Void) {
      let start = DispatchTime.now().uptimeNanoseconds
      body()
      if parts[name] == nil { order.append(name) }
      parts[name, default: []].append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
      flops[name] = flop
    }
    let encoder = model.encoder
    let perLayer = encoder.globalPool != nil  // the stages timed one by one (pool `avg`)
    let fused = encoder.fusedPools
    for _ in 0..<options.timedSteps {
      peaks.measure()
      time("zero gradients") { zeroGradients(model.parameters) }
      var v = Tensor(zeros: [0])
      var stageNames: [String] = []
      var stageFlops: [Double] = []
      if perLayer {
        var x = images
        var convIndex = 0
        var poolIndex = 0
        for (index, stage) in encoder.stages.enumerated() {
          switch stage {
          case .conv(let conv):
            let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
            let flop = 2.0 * Double(b * conv.outChannels * conv.inChannels * 9 * h * w)
            let pool = fused.contains(index + 1)  // the max-pool after it runs inside it
            let name = convName(conv, convIndex, pool: pool ? poolIndex : nil, h, w)
            stageNames.append(name)
            stageFlops.append(flop * (convIndex == 0 ? 1 : 2))
            if conv.algorithm == .winograd {
              let tile = conv.winogradTile(height: h, width: w)
              winogradShare[name + " fwd"] = multipliesShare(tile: tile, height: h, width: w)
              winogradShare[name + " bwd"] = multipliesShare(tile: tile, height: h, width: w)
            }
            time(name + " fwd", flop: flop) { x = conv.forward(x, pool: pool) }
            convIndex += 1
          case .maxPool(let pool):
            let name = "maxpool\(poolIndex) \(x.shape[2])×\(x.shape[3])"
            stageNames.append(name)
            stageFlops.append(0)
            if !fused.contains(index) { time(name + " fwd") { x = pool.forward(x) } }
            poolIndex += 1
          }
        }
        time("avgpool+fc fwd") { v = encoder.fc.forward(encoder.globalPool!.forward(x)) }
      } else {
        time("encoder forward") { v = encoder.forward(images) }
      }
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
      if perLayer {
        var grad = Tensor(zeros: [0])
        time("avgpool+fc bwd") {
          grad = encoder.globalPool!.backward(encoder.fc.backward(dv, needInputGrad: true)!)
        }
        for (index, stage) in encoder.stages.enumerated().reversed() {
          let name = stageNames[index] + " bwd"
          switch stage {
          case .conv(let conv):
            time(name, flop: stageFlops[index]) {
              if let g = conv.backward(grad, needInputGrad: index != 0) { grad = g }
            }
          case .maxPool(let pool):
            if !fused.contains(index) { time(name) { grad = pool.backward(grad) } }
          }
        }
      } else {
        time("encoder backward") { encoder.backward(dv) }
      }
      time("optimizer step") { optimizer.step(learningRate: 1e-4) }
    }
    peaks.measure()  // and once after the last step
    let peak = peaks.report(log: log)
    let total = order.reduce(0.0) { $0 + median(parts[$1] ?? [0]) }
    var encoderSeconds = 0.0
    for name in order {
      let seconds = median(parts[name] ?? [0])
      if name.hasPrefix("conv") || name.hasPrefix("maxpool") || name.hasPrefix("avgpool")
        || name.hasPrefix("encoder")
      {
        encoderSeconds += seconds
      }
      log(
        profileLine(
          name, seconds: seconds, total: total, flop: flops[name] ?? 0, peak: peak,
          winograd: winogradShare[name].map { ("Winograd", $0) }))
    }
    log(
      "  " + pad("encoder (all stages)", 34)
        + String(cFormat: "%9.2f ms  %5.1f%%", encoderSeconds * 1000, encoderSeconds / total * 100))
    log("  " + pad("total", 34) + String(cFormat: "%9.2f ms", total * 1000))
  }

  /// Multiplies a Winograd pass does per multiply of direct convolution on an H×W map, counting
  /// whole tiles: F(2×2, 3×3) does 16 per 2×2 output tile where direct convolution does 36,
  /// F(4×4, 3×3) 36 per 4×4 tile where it does 144.
  static func multipliesShare(tile: Int, height: Int, width: Int) -> Double {
    let tiles = ((height + tile - 1) / tile) * ((width + tile - 1) / tile)
    return Double(tiles * (tile + 2) * (tile + 2)) / Double(height * width * 9)
  }

  /// A convolution's name in the profiles: `conv1 64→64 224×224`, or with the max-pool `pool`
  /// after it run inside it, `conv1+maxpool0 64→64 224×224`.
  static func convName(_ conv: Conv2D, _ index: Int, pool: Int?, _ height: Int, _ width: Int) -> String {
    let pooled = pool.map { "+maxpool\($0)" } ?? ""
    return "conv\(index)\(pooled) \(conv.inChannels)→\(conv.outChannels) \(height)×\(width)"
  }

  /// One line of a profile: the part's median time and share of the total; with `flop` (direct-
  /// convolution FLOPs), its rate and share of `peak`; with `winograd` (a label and the share of
  /// direct multiplies it does), the rate of the multiplies done too.
  static func profileLine(
    _ name: String, seconds: Double, total: Double, flop: Double, peak: Double,
    winograd: (label: String, share: Double)?
  ) -> String {
    var line = pad(name, 34) + String(cFormat: "%9.2f ms  %5.1f%%", seconds * 1000, seconds / total * 100)
    guard flop > 0 else { return "  " + line }
    let rate = flop / seconds / 1e9
    line += String(cFormat: "  %6.1f GFLOP/s %3.0f%% of peak", rate, rate / peak * 100)
    if let winograd {
      let done = rate * winograd.share
      line +=
        " (\(winograd.label): "
        + String(cFormat: "%.1f GFLOP/s of multiplies done, %.0f%%)", done, done / peak * 100)
    }
    return "  " + line
  }

  /// `text` padded with spaces to `width` characters.
  static func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
  }

  static func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    return sorted.count % 2 == 1
      ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
  }
}
