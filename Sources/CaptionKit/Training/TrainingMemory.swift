import FoundationEssentials
import Glibc

/// The memory a training run needs, estimated before anything is allocated, so that a configuration
/// that cannot fit is refused with the figures rather than killed by the kernel part-way (SPEC §8).
///
/// Counted in 4-byte floats, for batches of B images, R = B·K caption rows and T decoder steps:
/// - every trainable parameter (the model's and the word-loss head's) 4 times: the weight, its
///   gradient and Adam's two moments;
/// - the encoder: the input images B·3·S², and each layer's output map B·C·h·w twice (the values
///   kept for the backward pass and their gradient; a conv that runs the max-pool after it inside,
///   `Conv2D.fusesPool`, keeps the pooled map, and that pool nothing);
/// - the decoder: the embedded inputs T·R·E; per recurrent layer T·R·(2·G·H + 3·H + In) (gate
///   values and their gradients, the states h, c and tanh c, the gradient on its input); the
///   logits and their gradient 2·T·R·V.
/// The scene and mention heads (a few thousand parameters) and the data loader's buffers are left
/// out: the estimate is a floor, meant to catch what cannot possibly fit.
public struct TrainingMemory: Equatable, Sendable {
  /// Trainable parameters, each held 4 times. (Counts are Doubles: sizes from the command line
  /// may multiply past Int's range; they are exact up to 2⁵³.)
  public var parameters: Double
  /// Floats of activations and their gradients for one batch.
  public var activations: Double

  /// Bytes in all.
  public var bytes: Double { 4 * (4 * parameters + activations) }

  public init(config: ModelConfig, options: TrainOptions) {
    let (v, e, h, dv) = (
      Double(config.vocabSize), Double(config.embed), Double(config.hidden), Double(config.dv)
    )
    parameters = config.expectedTensorShapes().reduce(0) { $0 + $1.shape.reduce(1) { $0 * Double($1) } }
    if let weight = options.wordLoss, weight > 0 { parameters += dv * v + v }

    let (b, t) = (Double(options.batchSize), Double(options.maxLength))
    let rows = b * Double(options.captionsPerImage)
    var size = config.imageSize
    var channels = 3
    var encoder = b * 3 * Double(size * size)
    var pooledInside = false  // the conv before ran this max-pool
    for (index, layer) in config.layers.enumerated() {
      switch layer {
      case .conv(let out):
        pooledInside =
          index + 1 < config.layers.count && config.layers[index + 1] == .maxPool
          && Conv2D.fusesPoolByDefault(inChannels: channels, height: size, width: size)
        channels = out
        if pooledInside { size /= 2 }
      case .maxPool:
        if pooledInside {
          pooledInside = false
          continue
        }
        size /= 2
      }
      encoder += 2 * b * Double(channels) * Double(size * size)
    }
    var decoder = t * rows * e
    let gates = Double(config.cell.gates)
    for l in 0..<config.rnnLayers {
      decoder += t * rows * (2 * gates * h + 3 * h + (l == 0 ? e : h))
    }
    decoder += 2 * t * rows * v
    activations = encoder + decoder
  }

  /// Throws when the run needs more than `availableBytes` (nil: unknown, nothing is refused).
  public func check(availableBytes: Int? = TrainingMemory.availableBytes()) throws {
    guard let availableBytes, bytes > Double(availableBytes) else { return }
    throw CaptionError(
      .tooLarge, path: "train",
      "this configuration needs about \(TrainingMemory.format(bytes)) to train ("
        + "\(TrainingMemory.format(16 * parameters)) for \(String(cFormat: "%.0f", parameters)) parameters with their gradients "
        + "and Adam's moments, \(TrainingMemory.format(4 * activations)) for a batch's activations), "
        + "more than the \(TrainingMemory.format(Double(availableBytes))) of memory available: "
        + "choose smaller sizes (--hidden, --embed, --dv, --layers) or a smaller --batch-size")
  }

  /// What this machine can give a new allocation: MemAvailable from /proc/meminfo (MemTotal on old
  /// kernels), lowered to the room left under a cgroup v2 memory limit; nil when neither is known.
  public static func availableBytes(
    meminfo: String? = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
    cgroupLimit: String? = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8),
    cgroupUsage: String? = try? String(contentsOfFile: "/sys/fs/cgroup/memory.current", encoding: .utf8)
  ) -> Int? {
    var available: Int? = nil
    if let meminfo {
      func kilobytes(_ key: String) -> Int? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix(key + ":") {
          let fields = line.split(separator: " ")
          if fields.count >= 2, let value = Int(fields[1]) { return value * 1024 }
        }
        return nil
      }
      available = kilobytes("MemAvailable") ?? kilobytes("MemTotal")
    }
    let trimmed = { (text: String?) in
      text.flatMap { Int($0.trimmingWhitespace()) }
    }
    if let limit = trimmed(cgroupLimit) {
      let room = max(limit - (trimmed(cgroupUsage) ?? 0), 0)
      available = min(available ?? room, room)
    }
    return available
  }

  /// Bytes for a message: "1.5 GB", "12.0 MB" (powers of 1000).
  static func format(_ value: Double) -> String {
    if value >= 1e9 { return String(cFormat: "%.1f GB", value / 1e9) }
    if value >= 1e6 { return String(cFormat: "%.1f MB", value / 1e6) }
    return String(cFormat: "%.1f kB", value / 1e3)
  }
}
