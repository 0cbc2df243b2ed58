import ArgumentParser
import CaptionKit
import FoundationEssentials
import Glibc

/// `caption features`: an encoder file's convolutional feature maps of some images, written to a
/// safetensors file. A diagnostic (not in `caption help`'s list): the parity check against
/// torchvision (`scripts/check_torchvision_parity.sh`) runs it.
struct Features: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "features",
    abstract: "Write an encoder's convolutional feature maps of images (a diagnostic).",
    usage: "caption features <image>... --encoder <file> --out <out.safetensors> [--image-size <n>]",
    discussion: """
      Reads ENCODER (a caption encoder file, a torchvision VGG safetensors file, or a caption \
      model), preprocesses each image as training does (SPEC §4, the file's mean and std) and writes \
      OUT with two tensors: `input` [B, 3, S, S], the normalised images, and `features` \
      [B, C, h, w], the feature map after the encoder's last layer (torchvision's `features`).

      Example:
        caption features photo.jpg --encoder vgg16.encoder.safetensors --out f.safetensors
      """,
    shouldDisplay: false)

  @Argument(help: "The images (JPEG or PNG).")
  var images: [String]

  @Option(name: .long, help: "The encoder file.")
  var encoder: String

  @Option(name: .long, help: "The output safetensors file.")
  var out: String

  @Option(name: .long, help: "The square size the encoder sees (default: the file's).")
  var imageSize: Int?

  @Option(name: .long, help: "Compute threads.")
  var threads: Int = 2

  func validate() throws {
    guard !images.isEmpty else { throw ValidationError("give at least one image") }
    guard (1...4096).contains(imageSize ?? 224) else {
      throw ValidationError("--image-size must be from 1 to 4096")
    }
    guard (1...256).contains(threads) else { throw ValidationError("--threads must be from 1 to 256") }
    guard !out.isEmpty else { throw ValidationError("--out must name a file") }
  }

  func run() throws {
    try reportingErrors {
      BLAS.setThreads(threads)
      let file = try EncoderFile.load(path: encoder)
      let size = imageSize ?? file.imageSize
      let model = file.makeEncoder(imageSize: size)
      guard model.config.encoderOutputShape.height >= 1 else {
        throw CaptionError(
          .invalidArgument, path: encoder, "its layers pool \(size) px images below 1 pixel")
      }
      let pixels = try images.map { try CaptionKit.Preprocess.load(path: $0, size: size) }
      let input = CaptionKit.Preprocess.batch(pixels, mean: file.mean, std: file.std)
      let features = model.features(input, keepActivations: false)
      try Safetensors.write(
        path: out, tensors: [(name: "input", tensor: input), (name: "features", tensor: features)],
        metadata: ["format": "caption-features", "encoder": encoder])
    }
  }
}
