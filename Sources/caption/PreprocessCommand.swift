import ArgumentParser
import CaptionKit

struct Preprocess: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "preprocess",
    abstract: "Write an image as the network sees it.",
    usage: "caption preprocess <image> --out <out> [<options>]",
    discussion: """
      Decodes IMAGE (JPEG or PNG), applies its EXIF orientation, resizes so the shorter side is \
      SIZE and centre-crops to SIZE×SIZE (SPEC §4), and writes the 8-bit pixels the network sees \
      before normalisation. The output is PNG, or binary PPM when OUT ends in .ppm.

      Examples:
        caption preprocess photo.jpg --out seen.png
        caption preprocess photo.jpg --out seen.ppm --size 224
        caption preprocess scan.png --out decoded.png --no-resize
      """)

  @Argument(help: "The image file (JPEG or PNG).")
  var image: String

  @Option(name: .long, help: "The output file (.png, or .ppm).")
  var out: String

  @Option(name: .long, help: "The square size the network sees (default 64, the bundled model's).")
  var size: Int?

  @Flag(name: .long, help: "Write the decoded RGB pixels at full size, without resizing.")
  var noResize = false

  @Option(name: .long, help: "Refuse images with more pixels than this (width × height).")
  var maxPixels: Int = 64_000_000

  func validate() throws {
    if noResize && size != nil { throw ValidationError("--size and --no-resize exclude each other") }
    guard (1...8192).contains(size ?? 64) else { throw ValidationError("--size must be between 1 and 8192") }
    guard maxPixels > 0 else { throw ValidationError("--max-pixels must be positive") }
    guard !out.isEmpty else { throw ValidationError("--out must name a file") }
  }

  func run() throws {
    try reportingErrors {
      let decoder = ImageDecoder(maxPixels: maxPixels)
      let seen =
        noResize
        ? try decoder.decode(path: image)
        : try CaptionKit.Preprocess.load(path: image, size: size ?? 64, decoder: decoder)
      let bytes = out.lowercased().hasSuffix(".ppm") ? PPMWriter.encode(seen) : try PNGWriter.encode(seen)
      try AtomicFile.write(bytes, to: out)
    }
  }
}
