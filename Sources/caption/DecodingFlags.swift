import ArgumentParser
import CaptionKit

/// How `describe` and `evaluate` decode (SPEC §2, §3): one set of flags, checked when parsed
/// (`DecodingOptions.validate` holds the ranges and the messages).
struct DecodingFlags: ParsableArguments {
  @Option(help: "Beam width, 1 (greedy) to \(DecodingOptions.maximumBeamSize).")
  var beam: Int = 3

  @Option(
    help: "At most this many decoder steps (words + <end>), 1 to \(DecodingOptions.maximumLength).")
  var maxLength: Int = 20

  @Flag(help: "Sample words instead of searching (the beam is then unused).")
  var sample = false

  @Option(help: "Sampling temperature (above 0).")
  var temperature: Float = 1

  @Option(help: "Sample from the K most likely words (0: all).")
  var topK: Int = 0

  @Option(help: "Seed for sampling.")
  var seed: UInt64 = 1

  @Flag(help: "Never emit <unk>.")
  var forbidUnk = false

  @Flag(help: "Never repeat a word trigram.")
  var blockTrigrams = false

  var options: DecodingOptions {
    DecodingOptions(
      maxLength: maxLength, forbidUnk: forbidUnk, blockRepeatedTrigrams: blockTrigrams, beamSize: beam,
      sample: sample, temperature: Double(temperature), topK: topK, seed: seed)
  }

  func validate() throws {
    do { try options.validate() } catch let error as CaptionError { throw ValidationError(error.description) }
  }
}
