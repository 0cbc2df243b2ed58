import ArgumentParser
import CaptionKit
import FoundationEssentials
import Glibc

struct DatasetCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "dataset", abstract: "Make datasets.", subcommands: [Shapes.self])

  struct Shapes: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "shapes", abstract: "Render the synthetic shapes dataset (SPEC §9).",
      usage: "caption dataset shapes --out <dir> --count <n> --seed <seed> [<options>]",
      discussion: """
        Writes DIR/images/, DIR/captions.json (Karpathy layout, 5 captions per image, train/val/test \
        splits) and DIR/scenes.json (every object's shape, colour, size, centre and bounding box). \
        The same seed gives the same files on any machine.

        Examples:
          caption dataset shapes --out data/shapes --count 10000 --seed 1
          caption dataset shapes --out data/shapes-test --count 1000 --seed 2 \\
            --val 0 --test 1
          caption dataset shapes --out /tmp/photos --count 10000 --seed 3 \\
            --image-size 500x375 --format jpg --jpeg-quality 85
        """)

    @Option(help: "The folder to write (created if missing; an existing dataset there needs --force).")
    var out: String

    @Option(help: "How many images to render.")
    var count: Int

    @Option(help: "The random seed (a non-negative integer).")
    var seed: UInt64

    @Option(
      help: ArgumentHelp(
        "Side of the square images in pixels (16–1024), or WIDTHxHEIGHT (shorter side 16–1024, longer at most 4096): the square scene in the middle, its edges continued.",
        valueName: "size"))
    var imageSize: ShapesImageSize = ShapesImageSize(width: 64, height: 64)

    @Option(help: "JPEG quality of the jpg images (1–100).")
    var jpegQuality: Int = 92

    @Option(help: "Image file format: png, jpg or mixed (half of each, chosen per image).")
    var format: ShapesImageFormat = .png

    @Option(help: "Fraction of the images in the validation split.")
    var val: Double = 0.1

    @Option(help: "Fraction of the images in the test split.")
    var test: Double = 0.1

    @Flag(help: "Replace the dataset at --out (kept until the new one is complete).")
    var force = false

    func validate() throws {
      guard count >= 1 && count <= 1_000_000 else {
        throw ValidationError("--count must be between 1 and 1000000.")
      }
      guard imageSize.shorter >= 16 && imageSize.shorter <= 1024 else {
        throw ValidationError("--image-size must be between 16 and 1024.")
      }
      guard max(imageSize.width, imageSize.height) <= 4096 else {
        throw ValidationError("--image-size: the longer side must be at most 4096.")
      }
      guard jpegQuality >= 1 && jpegQuality <= 100 else {
        throw ValidationError("--jpeg-quality must be between 1 and 100.")
      }
      guard val.isFinite && val >= 0 && val <= 1 else {
        throw ValidationError("--val must be between 0 and 1.")
      }
      guard test.isFinite && test >= 0 && test <= 1 else {
        throw ValidationError("--test must be between 0 and 1.")
      }
      guard val + test <= 1 else { throw ValidationError("--val and --test must add up to at most 1.") }
      guard !out.isEmpty else { throw ValidationError("--out must name a folder.") }
    }

    func run() throws {
      let line = TerminalLine()
      var completed = true
      try reportingErrors {
        defer { line.clear() }
        completed = try ShapesDataset.generate(
          outputFolder: out, count: count, seed: seed, imageSize: imageSize.shorter, format: format,
          valFraction: val, testFraction: test, replace: force,
          canvas: imageSize.isSquare ? nil : (imageSize.width, imageSize.height), jpegQuality: jpegQuality,
          log: { text in
            line.clear()
            printError(text, prefix: "")
          },
          progress: { done, total in line.show("rendering \(done)/\(total) images") })
      }
      if !completed {
        printError("interrupted: nothing was written to \(out)", prefix: "")
        throw ExitCode(130)
      }
    }
  }
}

extension ShapesImageFormat: ExpressibleByArgument {}

/// `--image-size 64` (a square) or `--image-size 500x375` (width × height).
struct ShapesImageSize: ExpressibleByArgument {
  var width: Int
  var height: Int

  init(width: Int, height: Int) {
    (self.width, self.height) = (width, height)
  }

  init?(argument: String) {
    let parts = argument.split(separator: "x", omittingEmptySubsequences: false)
    guard parts.count == 1 || parts.count == 2, let width = Int(parts[0]), let height = Int(parts.last!)
    else {
      return nil
    }
    (self.width, self.height) = (width, height)
  }

  var defaultValueDescription: String { width == height ? "\(width)" : "\(width)x\(height)" }
  var shorter: Int { min(width, height) }
  var isSquare: Bool { width == height }
}
