import ArgumentParser
import CaptionKit
import FoundationEssentials
import Glibc

/// `caption embed`, `caption index`, `caption search`: the joint image–sentence space of a model
/// trained with `--retrieval` (SPEC §2).

/// `[0.1, -0.2, …]`: each number as Swift writes it (the shortest that reads back).
private func jsonVector(_ vector: [Float]) -> String {
  "[" + vector.map { DescribeOutput.jsonNumber(Double($0)) }.joined(separator: ", ") + "]"
}

/// Loads the model found as `describe` finds it, with its retrieval part.
private func jointSpace(_ model: String?) throws -> JointSpace {
  try JointSpace(modelPath: try ModelLocator.locate(explicit: model))
}

struct Embed: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "embed",
    abstract: "Print the joint-space vectors of images or texts.",
    usage: "caption embed <images>... | --text <text>... [<options>]",
    discussion: """
      One JSON object per line: {"image": PATH, "embedding": [...]} per image (a failed image: \
      {"image": PATH, "error": MESSAGE}, exit 1), or {"text": TEXT, "embedding": [...]} per --text. \
      The vectors are unit vectors; their dot product is the model's image–sentence score. Needs a \
      model trained with --retrieval.

      Examples:
        caption embed datasets/shapes/examples/000001.png
        caption embed --text "two red circles left of a blue star"
      """)

  @Argument(help: "Image files, directories, or - for paths on stdin.") var images: [String] = []
  @Option(help: "A text to embed (repeatable).") var text: [String] = []
  @Option(help: "The model file.") var model: String?
  @Option(help: "Compute threads.") var threads: Int = 1

  func validate() throws {
    if images.isEmpty == text.isEmpty { throw ValidationError("give images or --text, not both") }
    if threads < 1 { throw ValidationError("--threads must be at least 1") }
  }

  func run() throws {
    var failures = 0
    try reportingErrors {
      BLAS.setThreads(threads)
      let space = try jointSpace(model)
      for item in text {
        let vector = try space.textVector(item, what: "--text")
        StandardOutput.line("{\"text\": \(JSONText.quoted(item)), \"embedding\": \(jsonVector(vector))}")
      }
      guard !images.isEmpty else { return }
      let paths = try DescribeInput.expand(
        arguments: images, readStdin: { DescribeInput.standardInputText() })
      for (path, outcome) in zip(paths, space.imageVectors(paths: paths)) {
        switch outcome {
        case .success(let vector):
          StandardOutput.line("{\"image\": \(JSONText.quoted(path)), \"embedding\": \(jsonVector(vector))}")
        case .failure(let error):
          failures += 1
          StandardOutput.line(DescribeOutput.jsonErrorLine(path: path, message: error.reason))
          printError(error.description)
        }
      }
    }
    if failures > 0 { throw ExitCode(1) }
  }
}

struct IndexCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "index",
    abstract: "Encode a folder of images once into an image index for `caption search`.",
    usage: "caption index <images>... --out <index> [<options>]",
    discussion: """
      Writes INDEX atomically (safetensors: the images' joint-space vectors, their paths, sizes and \
      modification times, the model's hash). Over an index of the same model, only new or changed \
      files are encoded, and files no longer there are dropped; an index of another model is \
      rebuilt. Unreadable images are skipped and counted.

      Example:
        caption index datasets/shapes/examples --out examples.index
      """)

  @Argument(help: "Image files or directories.") var images: [String]
  @Option(help: "The index file to write (or update).") var out: String
  @Option(help: "The model file.") var model: String?
  @Option(help: "Compute threads.") var threads: Int = 2

  func validate() throws {
    if threads < 1 { throw ValidationError("--threads must be at least 1") }
    if out.isEmpty { throw ValidationError("--out must name a file") }
  }

  func run() throws {
    try reportingErrors {
      BLAS.setThreads(threads)
      let space = try jointSpace(model)
      let paths = try DescribeInput.expand(arguments: images, readStdin: { nil })
      var existing = ImageIndex(modelHash: space.modelHash, dim: space.dimension)
      if FileManager.default.fileExists(atPath: out) {
        let old = try ImageIndex.load(path: out)
        if old.modelHash == space.modelHash && old.dim == space.dimension {
          existing = old
        } else {
          printError("\(out): made with another model: encoding every image again", prefix: "caption: ")
        }
      }
      let (index, encoded, failures) = existing.updated(paths: paths) { space.imageVectors(paths: $0) }
      for failure in failures { printError("skipped " + failure.description) }
      try index.save(path: out)
      printError(
        "\(out): \(index.entries.count) images (\(encoded) encoded, \(index.entries.count - encoded) kept)"
          + (failures.isEmpty ? "" : ", \(failures.count) skipped"), prefix: "")
    }
  }
}

struct Search: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "search",
    abstract: "Find the images that best match a text.",
    usage: "caption search [--index <index> | <images>...] <query> [<options>]",
    discussion: """
      Prints the best images, best first, one `SCORE PATH` line each (the cosine, 4 decimals); \
      --json: one {"image": PATH, "score": FLOAT} per line. Searches an index (`caption index`) \
      made with the same model, or encodes the images given (files, directories) on the spot.

      Examples:
        caption search --index examples.index "two red circles left of a star"
        caption search datasets/shapes/examples hearts --top 3
      """)

  @Argument(help: "Image files or directories (without --index), then the query.") var arguments: [String]
  @Option(help: "An index made by `caption index`.") var index: String?
  @Option(help: "The model file.") var model: String?
  @Option(help: "How many images to print.") var top: Int = 10
  @Flag(help: "One JSON object per result line.") var json = false
  @Option(help: "Compute threads.") var threads: Int = 2

  func validate() throws {
    if top < 1 { throw ValidationError("--top must be at least 1") }
    if threads < 1 { throw ValidationError("--threads must be at least 1") }
    if index != nil && arguments.count != 1 {
      throw ValidationError("with --index, give only the query")
    }
    if index == nil && arguments.count < 2 {
      throw ValidationError("give --index INDEX, or images or folders, and then the query")
    }
  }

  func run() throws {
    try reportingErrors {
      BLAS.setThreads(threads)
      // the index is read while the model loads (its errors still come after the model's and the query's)
      let reading = index.map { path in Background { try ImageIndex.load(path: path) } }
      let space = try jointSpace(model)
      let query = try space.textVector(arguments.last!)
      var paths: [String] = []
      var vectors: [Float] = []
      if let index, let reading {
        let file = try space.check(try reading.value(), path: index)
        (paths, vectors) = (file.entries.map(\.path), file.embeddings)
      } else {
        let all = try DescribeInput.expand(arguments: Array(arguments.dropLast()), readStdin: { nil })
        var skipped = 0
        for (path, outcome) in zip(all, space.imageVectors(paths: all)) {
          switch outcome {
          case .success(let vector):
            paths.append(path)
            vectors += vector
          case .failure(let error):
            skipped += 1
            printError("skipped " + error.description)
          }
        }
        if skipped > 0 { printError("skipped \(skipped) images that could not be read", prefix: "") }
      }
      guard !paths.isEmpty else {
        throw CaptionError(.badDataset, path: index ?? arguments[0], "no image could be read to search")
      }
      let best = vectors.withUnsafeBufferPointer {
        JointSpace.rank(query: query, vectors: $0.baseAddress!, count: paths.count, top: top)
      }
      for (row, score) in best {
        StandardOutput.line(
          json
            ? JointSpace.resultJSON(path: paths[row], score: score)
            : String(cFormat: "%.4f ", score) + paths[row])
      }
    }
  }
}
