import ArgumentParser
import CaptionKit
import FoundationEssentials
import Glibc

struct Describe: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "describe",
    abstract: "Caption images.",
    discussion: """
      Prints `PATH: caption` per image, or the bare caption when exactly one file \
      is given. Directories expand to their .jpg/.jpeg/.png files (sorted); `-` \
      reads paths from stdin. The model is --model, else $CAPTION_MODEL, else \
      models/shapes.safetensors (here or beside the executable). Exit status 1 if \
      any image could not be captioned.

      Examples:
        caption describe datasets/shapes/examples/000001.png
        caption describe --beam 5 datasets/shapes/examples
        caption describe --json photos/*.jpg > captions.jsonl
        caption describe --sample --temperature 0.8 --top-k 10 --seed 3 photo.jpg
        caption describe --rerank 10 --json datasets/shapes/examples/000001.png
        find photos -name '*.jpg' | caption describe -
      """)

  @Argument(help: "Image files, directories, or - for paths on stdin.") var images: [String]
  @Option(help: "The model file.") var model: String?
  @OptionGroup(title: "Decoding") var decoding: DecodingFlags
  @Flag(help: "One JSON object per image per line on stdout.") var json = false
  @Option(help: "Images per batch.") var batchSize: Int = defaultBatchSize
  @Option(help: "Compute threads.") var threads: Int = defaultThreads

  // The defaults of the two options above, which `parsedDirectly` gives too.
  static let defaultBatchSize = 16
  static let defaultThreads = 1

  /// The captioner prepared while ArgumentParser parses the command line (`Caption.main`).
  nonisolated(unsafe) static var prefetch: CaptionerPrefetch?

  func validate() throws {
    if batchSize < 1 || threads < 1 { throw ValidationError("--batch-size and --threads must be at least 1") }
  }

  func run() throws {
    var failures = 0
    try reportingErrors {
      BLAS.setThreads(threads)
      let paths = try DescribeInput.expand(
        arguments: images, readStdin: { DescribeInput.standardInputText() })
      let modelPath = try ModelLocator.locate(explicit: model)
      let captioner = try Describe.prefetch?.captioner(path: modelPath) ?? Captioner(modelPath: modelPath)
      let options = try decoding.options(config: captioner.modelFile.config, path: modelPath)
      failures = DescribeRun.run(
        paths: paths, batchSize: batchSize, model: captioner.model, vocabulary: captioner.vocabulary,
        options: options, json: json, bare: DescribeInput.namesSingleFile(images),
        reportsFamiliar: true,
        familiar: Familiarity(file: captioner.modelFile).map { familiarity in
          { familiarity.verdicts(imageVectors: $0, encoder: captioner.model.encoder) }
        },
        reranker: captioner.reranker,
        load: { try captioner.load(path: $0) }, encode: { captioner.encode($0) },
        write: { stdout, stderr in
          if let stdout { StandardOutput.line(stdout) }
          if let stderr { printError(stderr) }
        })
    }
    if failures > 0 { throw ExitCode(1) }
  }
}
