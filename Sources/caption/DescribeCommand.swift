import ArgumentParser
import CaptionKit
import Foundation

struct Describe: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "describe",
    abstract: "Caption images.",
    discussion: """
      Prints `PATH: caption` per image, or the bare caption when exactly one file is given.
      Directories expand to their .jpg/.jpeg/.png files (sorted); `-` reads paths from stdin.
      The model is --model, else $CAPTION_MODEL, else models/shapes.safetensors (here or beside
      the executable). Exit status 1 if any image could not be captioned.

      Examples:
        caption describe datasets/shapes/examples/0001.png
        caption describe --beam 5 photos/
        caption describe --json photos/*.jpg > captions.jsonl
        caption describe --sample --temperature 0.8 --top-k 10 --seed 3 photo.jpg
        find photos -name '*.jpg' | caption describe -
      """)

  @Argument(help: "Image files, directories, or - for paths on stdin.") var images: [String]
  @Option(help: "The model file.") var model: String?
  @Option(help: "Beam width (1: greedy).") var beam: Int = 3
  @Option(help: "At most this many decoder steps (words + <end>).") var maxLength: Int = 20
  @Flag(help: "Sample words instead of searching.") var sample = false
  @Option(help: "Sampling temperature.") var temperature: Float = 1
  @Option(help: "Sample from the K most likely words (0: all).") var topK: Int = 0
  @Option(help: "Seed for sampling.") var seed: UInt64 = 1
  @Flag(help: "Never emit <unk>.") var forbidUnk = false
  @Flag(help: "Never repeat a word trigram.") var blockTrigrams = false
  @Flag(help: "One JSON object per image per line on stdout.") var json = false
  @Option(help: "Images per batch.") var batchSize: Int = 16
  @Option(help: "Compute threads.") var threads: Int = 1

  func validate() throws {
    if beam < 1 { throw ValidationError("--beam must be at least 1") }
    if maxLength < 1 { throw ValidationError("--max-length must be at least 1") }
    if !(temperature > 0) { throw ValidationError("--temperature must be positive") }
    if topK < 0 { throw ValidationError("--top-k must not be negative") }
    if batchSize < 1 || threads < 1 { throw ValidationError("--batch-size and --threads must be at least 1") }
  }

  func run() throws {
    var failures = 0
    try reportingErrors {
      BLAS.setThreads(threads)
      let paths = try DescribeInput.expand(
        arguments: images, readStdin: { DescribeInput.standardInputText() })
      let captioner = try Captioner(modelPath: try ModelLocator.locate(explicit: model))
      var options = DecodingOptions()
      options.maxLength = maxLength
      options.beamSize = beam
      options.sample = sample
      options.temperature = Double(temperature)
      options.topK = topK
      options.seed = seed
      options.forbidUnk = forbidUnk
      options.blockRepeatedTrigrams = blockTrigrams
      try options.validate()
      failures = DescribeRun.run(
        paths: paths, batchSize: batchSize, model: captioner.model, vocabulary: captioner.vocabulary,
        options: options, json: json, bare: DescribeInput.namesSingleFile(images),
        load: { try captioner.load(path: $0) }, encode: { captioner.encode($0) },
        write: { stdout, stderr in
          if let stdout { StandardOutput.line(stdout) }
          if let stderr { printError(stderr) }
        })
    }
    if failures > 0 { throw ExitCode(1) }
  }
}
