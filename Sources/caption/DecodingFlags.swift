import ArgumentParser
import CaptionKit

/// How `describe` and `evaluate` decode (SPEC §2, §3): one set of flags, checked when parsed
/// (`DecodingOptions.validate` holds the ranges and the messages).
struct DecodingFlags: ParsableArguments {
  // The defaults of the options below, which `Describe.parsedDirectly` gives too.
  static let defaultMaxLength = 20
  static let defaultTemperature: Float = 1
  static let defaultTopK = 0
  static let defaultSeed: UInt64 = 1

  @Option(
    help: "Beam width, 1 (greedy) to \(DecodingOptions.maximumBeamSize) (default: 3, or N with --rerank N).")
  var beam: Int?

  @Option(
    help: "At most this many decoder steps (words + <end>), 1 to \(DecodingOptions.maximumLength).")
  var maxLength: Int = defaultMaxLength

  @Flag(help: "Sample words instead of searching (the beam is then unused).")
  var sample = false

  @Option(help: "Sampling temperature (above 0).")
  var temperature: Float = defaultTemperature

  @Option(help: "Sample from the K most likely words (0: all).")
  var topK: Int = defaultTopK

  @Option(help: "Seed for sampling.")
  var seed: UInt64 = defaultSeed

  @Flag(help: "Never emit <unk>.")
  var forbidUnk = false

  @Flag(help: "Never repeat a word trigram.")
  var blockTrigrams = false

  @Option(
    help: ArgumentHelp(
      "Decode N candidates (beam N) and choose by log p / length + λ · cosine in the joint space.",
      valueName: "N"))
  var rerank: Int?

  @Option(
    help: ArgumentHelp("λ of --rerank (default: the model's calibrated rerank_weight).", valueName: "λ"))
  var rerankWeight: Double?

  /// The options with `rerankWeight` as given (nil: the model's, which the command resolves).
  var options: DecodingOptions {
    var options = DecodingOptions(
      maxLength: maxLength, forbidUnk: forbidUnk, blockRepeatedTrigrams: blockTrigrams,
      beamSize: beam ?? rerank ?? 3, sample: sample, temperature: Double(temperature), topK: topK, seed: seed)
    options.rerank = rerank ?? 0
    options.rerankWeight = rerankWeight
    return options
  }

  /// `options` with λ resolved for the model at `path` (`Reranker.weight`), when reranking.
  func options(config: ModelConfig, path: String) throws -> DecodingOptions {
    var options = self.options
    if options.rerank > 0 {
      options.rerankWeight = try Reranker.weight(given: options.rerankWeight, config: config, path: path)
    }
    return options
  }

  func validate() throws {
    if rerank == nil && rerankWeight != nil { throw ValidationError("--rerank-weight needs --rerank N") }
    if let rerank, rerank < 1 || rerank > DecodingOptions.maximumBeamSize {
      throw ValidationError("--rerank must be from 1 to \(DecodingOptions.maximumBeamSize), got \(rerank)")
    }
    do { try options.validate() } catch let error as CaptionError { throw ValidationError(error.description) }
  }
}
