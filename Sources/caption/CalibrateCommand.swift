import ArgumentParser
import CaptionKit
import FoundationEssentials
import Glibc

/// `caption calibrate`: gives a model file its familiarity calibration (SPEC §3c) from images of
/// the kind it was trained on, and/or its rerank weight λ (SPEC §3b) from a captioned dataset,
/// without training; every other tensor and key is kept as it was.
struct Calibrate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "calibrate",
    abstract: "Calibrate a model's familiarity score, or its rerank weight λ, without training.",
    usage: """
      caption calibrate <images>... --out <out> [<options>]
      caption calibrate --rerank-data <data> --out <out> [<options>]
      """,
    discussion: """
      Image arguments: encodes the images (directories expand as for describe; unreadable ones \
      are skipped and counted), stores the mean and whitening of their encoder block means and \
      the threshold that describe's "familiar" uses.

      --rerank-data: decodes --rerank N beam candidates for each image of the dataset's --split \
      (default val), reranks them with every λ of 0, 0.5, 1, 2, 4, 8 and stores the λ whose \
      captions score the highest CIDEr-D as retrieval.rerank_weight (the model needs its \
      retrieval part).

      The model is written to --out (atomically; it may be --model). Training runs calibrate \
      both on their validation images by themselves.

      Examples:
        caption calibrate --model models/shapes.safetensors --out models/shapes.safetensors data/val
        caption calibrate --rerank-data data/shapes-val --out models/shapes.safetensors
      """)

  @Argument(help: "Image files, directories, or - for paths on stdin (familiarity).") var images: [String] =
    []
  @Option(help: "The model file.") var model: String?
  @Option(help: "Where to write the calibrated model.") var out: String
  @Option(help: "Compute threads.") var threads: Int = 1
  @Option(help: "A captioned dataset (as evaluate reads it) to choose the rerank weight λ on.")
  var rerankData: String?
  @Option(name: .customLong("images"), help: "With --rerank-data: the folder image paths are relative to.")
  var imageFolder: String?
  @Option(help: "With --rerank-data: the split to calibrate on: train, val or test.") var split: String =
    "val"
  @Option(help: "With --rerank-data: at most this many images (0: all).") var limit: Int = 0
  @Option(help: "With --rerank-data: beam candidates per image.")
  var rerank: Int = Reranker.calibrationCandidates

  func validate() throws {
    if threads < 1 { throw ValidationError("--threads must be at least 1") }
    if images.isEmpty && rerankData == nil {
      throw ValidationError("give images (familiarity), --rerank-data (rerank weight), or both")
    }
    if Split(rawValue: split) == nil { throw ValidationError("--split must be train, val or test") }
    if limit < 0 { throw ValidationError("--limit must not be negative") }
    if rerank < 1 || rerank > DecodingOptions.maximumBeamSize {
      throw ValidationError("--rerank must be from 1 to \(DecodingOptions.maximumBeamSize), got \(rerank)")
    }
  }

  func run() throws {
    try reportingErrors {
      BLAS.setThreads(threads)
      let modelPath = try ModelLocator.locate(explicit: model)
      let captioner = try Captioner(modelPath: modelPath)
      var file = captioner.modelFile
      var summary: [String] = []
      if let rerankData {
        guard file.config.retrieval != nil else { throw CaptionError.noRetrievalPart(path: modelPath) }
        let line = TerminalLine()
        defer { line.clear() }
        let chosenSplit = Split(rawValue: split)!
        line.show("loading \(rerankData)")
        let dataset = try Dataset.load(data: rerankData, images: imageFolder, evaluating: chosenSplit)
        var chosen = try dataset.nonEmptySplit(chosenSplit, data: rerankData)
        if limit > 0 { chosen = Array(chosen.prefix(limit)) }
        let (calibration, skipped) = RerankCalibration.calibrate(
          captioner: captioner, images: chosen, candidateCount: rerank,
          progress: { done, total in line.show("encoding \(done)/\(total); then \(rerank) candidates each") })
        line.clear()
        if skipped > 0 {
          printError("\(skipped) of \(chosen.count) images could not be read and were skipped")
        }
        guard let calibration else {
          throw CaptionError(
            .badDataset, path: rerankData,
            "none of the \(chosen.count) images of the \(split) split could be read")
        }
        for (weight, ciderD) in calibration.scores { printError("λ \(weight): CIDEr-D \(ciderD)") }
        calibration.store(in: &file)
        summary.append("rerank_weight \(Float(calibration.weight)) from \(calibration.images) images")
      }
      if !images.isEmpty {
        let familiarity = try familiarityCalibration(captioner)
        familiarity.calibration.store(in: &file)
        summary.append(
          "familiar_threshold \(familiarity.calibration.threshold) from \(familiarity.count) images")
      }
      try file.save(path: out)
      for line in summary { StandardOutput.line(line) }
    }
  }

  /// SPEC §3c's calibration on the image arguments.
  func familiarityCalibration(_ captioner: Captioner) throws -> (calibration: Familiarity, count: Int) {
    let paths = try DescribeInput.expand(
      arguments: images, readStdin: { DescribeInput.standardInputText() })
    var vectors: [Float] = []  // the block means [n, D] row by row
    let errors = captioner.encode(paths: paths, batchSize: 16) { _, _ in
      vectors += captioner.model.encoder.blockMeans.array
    }
    let skipped = errors.count(where: { $0 != nil })
    let width = captioner.modelFile.config.blockMeansWidth
    let count = vectors.count / width
    if skipped > 0 { printError("\(skipped) of \(paths.count) images could not be read and were skipped") }
    guard count >= 4 else {
      throw CaptionError(
        .badDataset, path: images.joined(separator: " "),
        "calibrating needs at least 4 readable images, found \(count)")
    }
    return (
      Familiarity.calibrate(vectors: Tensor(shape: [count, width], values: vectors), features: .blockMeans),
      count
    )
  }
}
