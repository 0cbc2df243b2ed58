import ArgumentParser
import CaptionKit
import FoundationEssentials
import Glibc

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Measure training and captioning throughput (SPEC §7).",
    discussion: """
      Trains on random data of a fixed shape and prints, last, `train_images_per_s=` \
      (forward, backward and an Adam step; median over timed steps after a warm-up) \
      and `describe_ms=` (one image: encoder plus exactly --length greedy steps; \
      median). With --forward-only it prints, last, `forward_images_per_s=` (the \
      encoder's forward alone at --batch, as feature extraction runs it; median). With \
      --from-features it prints, last, `features_train_images_per_s=` (training from the \
      feature cache: frozen convolutions, fc and the decoder; median).

      Examples:
        caption bench
        caption bench --threads 1 --cell gru
        caption bench --profile
        caption bench --isa avx2      # the AVX2 kernels on an AVX-512 machine
        caption bench --forward-only  # the encoder's forward alone
        caption bench --preset vgg16-224 --forward-only --batch 1 --profile  # describe's encoder, layer by layer
        caption bench --preset vgg16-224 --steps 3  # VGG-16's convolutions at 224 px
        caption bench --preset vgg16-224 --from-features  # the decoder on cached VGG-16 features
        caption bench --decode        # image decoding and preprocessing instead
        caption bench --metrics       # scoring 5 000 images × 5 references instead
      """)

  @Option(
    help: ArgumentHelp("A named configuration; other flags replace its values.", valueName: "name"))
  var preset: BenchmarkPreset = .standard
  @Option(help: "Image side (default: 64, or the preset's).") var imageSize: Int?
  @Option(help: "Encoder layers (default: 32,32,M,64,64,M,128,128,M,256,256,M, or the preset's).")
  var layers: String?
  @Option(help: "Image vector size.") var dv: Int = 256
  @Option(help: "Embedding size.") var embed: Int = 256
  @Option(help: "Hidden size.") var hidden: Int = 512
  @Option(help: "Vocabulary size.") var vocab: Int = 1000
  @Option(help: "Decoder steps per caption.") var length: Int = 16
  @Option(help: "Images per batch (default: 32, or the preset's).") var batch: Int?
  @Option(help: "Recurrent cell.") var cell: CellType = .lstm
  @Option(help: "Compute threads.") var threads: Int = 2
  @Option(help: "Timed training steps.") var steps: Int = 10
  @Option(
    help: ArgumentHelp(
      "Instruction set of the project's kernels: avx512, avx2 or baseline (default: the best the CPU has).",
      valueName: "isa"))
  var isa: PeakFlops.ISA?
  @Flag(
    help:
      "Print the time of each part of a training step (with --forward-only: of each encoder stage) and each convolution's share of the peak."
  )
  var profile = false
  @Flag(help: "Benchmark JPEG decoding and preprocessing instead.") var decode = false
  @Flag(help: "Benchmark the caption metrics instead.") var metrics = false
  @Flag(help: "Benchmark the encoder's forward alone at --batch instead.") var forwardOnly = false
  @Flag(help: "Benchmark training from cached features (frozen convolutions) instead.") var fromFeatures =
    false

  func validate() throws {
    if let layers, EncoderLayer.parseList(layers) == nil {
      throw ValidationError("--layers takes a list like 32,32,M,64")
    }
    for (name, value) in [
      ("image-size", imageSize ?? 1), ("dv", dv), ("embed", embed), ("hidden", hidden),
      ("length", length), ("batch", batch ?? 1), ("threads", threads), ("steps", steps),
    ]
    where value < 1 {
      throw ValidationError("--\(name) must be at least 1")
    }
    if vocab < 5 { throw ValidationError("--vocab must be at least 5") }
    if [decode, metrics, forwardOnly, fromFeatures].filter({ $0 }).count > 1 {
      throw ValidationError("--decode, --metrics, --forward-only and --from-features exclude each other")
    }
  }

  func run() throws {
    try reportingErrors {
      let log: (String) -> Void = { StandardOutput.line($0) }
      if let isa, !PeakFlops.force(isa) {
        throw CaptionError(.invalidArgument, path: "--isa", "this CPU has no \(isa.rawValue) instructions")
      }
      if decode { return try ImageBenchmark.run(log: log) }
      if metrics { return MetricsBenchmark.run(log: log) }
      var options = preset.options(forwardOnly: forwardOnly || fromFeatures)
      if let imageSize { options.imageSize = imageSize }
      if let layers { options.layers = EncoderLayer.parseList(layers)! }
      options.dv = dv
      options.embed = embed
      options.hidden = hidden
      options.vocab = vocab
      options.length = length
      if let batch { options.batch = batch }
      options.cell = cell
      options.threads = threads
      options.timedSteps = steps
      options.profile = profile
      try options.config.validate()
      if forwardOnly { return Benchmark.runForwardOnly(options, log: log) }
      if fromFeatures { return Benchmark.runFromFeatures(options, log: log) }
      Benchmark.run(options, log: log)
    }
  }
}

extension BenchmarkPreset: ExpressibleByArgument {}
extension PeakFlops.ISA: ExpressibleByArgument {}
