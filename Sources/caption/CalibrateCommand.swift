import ArgumentParser
import CaptionKit
import Foundation

/// `caption calibrate`: gives a model file its familiarity calibration (SPEC §3c) from images of
/// the kind it was trained on, without training; every other tensor and key is kept as it was.
struct Calibrate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "calibrate",
    abstract: "Calibrate a model's familiarity score on images like its training images.",
    usage: "caption calibrate <images>... --out <out> [<options>]",
    discussion: """
      Encodes the images (directories expand as for describe; unreadable ones are skipped and \
      counted), stores the mean and deviation of their image vectors and the threshold that \
      describe's "familiar" uses, and writes the model to --out (atomically; it may be --model). \
      Training runs calibrate on their validation images by themselves.

      Example:
        caption calibrate --model models/shapes.safetensors --out models/shapes.safetensors data/val
      """)

  @Argument(help: "Image files, directories, or - for paths on stdin.") var images: [String]
  @Option(help: "The model file.") var model: String?
  @Option(help: "Where to write the calibrated model.") var out: String
  @Option(help: "Compute threads.") var threads: Int = 1

  func validate() throws {
    if threads < 1 { throw ValidationError("--threads must be at least 1") }
  }

  func run() throws {
    try reportingErrors {
      BLAS.setThreads(threads)
      let modelPath = try ModelLocator.locate(explicit: model)
      let captioner = try Captioner(modelPath: modelPath)
      let paths = try DescribeInput.expand(
        arguments: images, readStdin: { DescribeInput.standardInputText() })
      var vectors: [Float] = []  // [n, dv] row by row
      var skipped = 0
      let batchSize = 16
      for start in stride(from: 0, to: paths.count, by: batchSize) {
        var batch: [RGBImage] = []
        for path in paths[start..<min(start + batchSize, paths.count)] {
          do {
            batch.append(try captioner.load(path: path))
          } catch {
            skipped += 1
          }
        }
        if !batch.isEmpty { vectors += captioner.encode(batch).array }
      }
      let dv = captioner.modelFile.config.dv
      let count = vectors.count / dv
      if skipped > 0 { printError("\(skipped) of \(paths.count) images could not be read and were skipped") }
      guard count >= 4 else {
        throw CaptionError(
          .badDataset, path: images.joined(separator: " "),
          "calibrating needs at least 4 readable images, found \(count)")
      }
      let familiarity = Familiarity.calibrate(vectors: Tensor(shape: [count, dv], values: vectors))
      var file = captioner.modelFile
      familiarity.store(in: &file)
      try file.save(path: out)
      StandardOutput.line("familiar_threshold \(familiarity.threshold) from \(count) images")
    }
  }
}
