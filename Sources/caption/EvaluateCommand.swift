import ArgumentParser
import CaptionKit
import FoundationEssentials
import Glibc

struct Evaluate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "evaluate",
    abstract: "Caption a dataset split and score it (BLEU-1..4, ROUGE-L, CIDEr-D, grounded scores).",
    discussion: """
      Captions are decoded as describe decodes them: beam 3 unless --beam or \
      --sample says otherwise. Grounded scores (object F1, attribute, count and \
      relation accuracy) are added where the dataset folder holds scenes.json.

      Examples:
        caption evaluate --data datasets/shapes/sample --split test
        caption evaluate --data datasets/shapes/sample --beam 1 --json
        caption evaluate --model runs/shapes.safetensors --data data/shapes \\
          --results results.json --references-out refs.json --report report.html
      """)

  @Option(help: "The model file (default: as describe finds it).") var model: String?
  @Option(help: "The dataset (as train reads it).") var data: String
  @Option(help: "The folder image paths are relative to.") var images: String?
  @Option(help: "The split to evaluate: train, val or test.") var split: String = "test"
  @Option(help: "Flickr8k: the test list.") var testList: String?
  @Option(help: "Evaluate at most this many images (0: all).") var limit: Int = 0
  @Option(help: "Write COCO-format results here.") var results: String?
  @Option(help: "Write the split's references here as COCO captions JSON.") var referencesOut: String?
  @Option(help: "Write a self-contained HTML report here.") var report: String?
  @Flag(help: "Print one JSON object with the scores.") var json = false
  @Flag(help: "Also rank the split's images and captions in the joint space (R@1, R@5, R@10, medr, rsum).")
  var retrieval = false
  @Option(
    help: ArgumentHelp(
      "With --retrieval: score pairs by the cosine in the joint space (embedding) or by the captioner's log p(caption | image) per step (generative).",
      valueName: "embedding|generative"))
  var ranker: String = "embedding"
  @Option(
    help:
      "With --retrieval: images per fold (the generative ranker scores every caption of a fold for every image)."
  )
  var retrievalFold: Int = RetrievalMetrics.foldSize
  @Option(help: "Images per batch.") var batchSize: Int = 32
  @Option(help: "Compute threads.") var threads: Int = 2
  @OptionGroup(title: "Decoding") var decoding: DecodingFlags

  func validate() throws {
    if Split(rawValue: split) == nil { throw ValidationError("--split must be train, val or test") }
    if batchSize < 1 || threads < 1 { throw ValidationError("--batch-size and --threads must be at least 1") }
    if limit < 0 { throw ValidationError("--limit must not be negative") }
    if RetrievalRanker(rawValue: ranker) == nil {
      throw ValidationError("--ranker must be embedding or generative")
    }
    if retrievalFold < 1 { throw ValidationError("--retrieval-fold must be at least 1") }
    if !retrieval && (ranker != "embedding" || retrievalFold != RetrievalMetrics.foldSize) {
      throw ValidationError("--ranker and --retrieval-fold need --retrieval")
    }
  }

  func run() throws {
    try reportingErrors {
      let line = TerminalLine()
      defer { line.clear() }
      BLAS.setThreads(threads)
      let modelPath = try ModelLocator.locate(explicit: model)
      let captioner = try Captioner(modelPath: modelPath)
      let space = retrieval ? try JointSpace(captioner: captioner, modelPath: modelPath) : nil
      let chosenSplit = Split(rawValue: split)!
      line.show("loading \(data)")
      let dataset = try Dataset.load(
        data: data, images: images, testList: testList, evaluating: chosenSplit)
      var chosen = dataset.split(chosenSplit)
      if limit > 0 { chosen = Array(chosen.prefix(limit)) }
      guard !chosen.isEmpty else {
        throw CaptionError(.badDataset, path: data, "the \(split) split has no images")
      }
      if let scenesPath = dataset.scenesPath { line.show("reading \(scenesPath)") }
      let scenes = try dataset.scenesPath.map { try Scenes.load(path: $0) }
      let options = try decoding.options(config: captioner.modelFile.config, path: modelPath)
      let result = Evaluator.run(
        captioner: captioner, images: chosen, options: options, scenes: scenes, batchSize: batchSize,
        progress: { done, total in
          // the references are tokenised and scored once the last batch is captioned
          line.show(done < total ? "captioning \(done)/\(total)" : "scoring \(total) captions")
        })
      line.clear()
      for (path, reason) in result.skipped { printError("skipped \(PrintableText.name(path)): \(reason)") }
      if !result.skipped.isEmpty {
        printError("skipped \(result.skipped.count) images that could not be read")
      }
      guard !result.images.isEmpty else {
        throw CaptionError(
          .badDataset, path: data, "none of the \(chosen.count) images of the \(split) split could be read")
      }

      if let results {
        try COCOFiles.writeResults(
          result.images.map { COCOResult(imageID: $0.image.id, caption: $0.tokens.joined(separator: " ")) },
          to: results)
      }
      if let referencesOut {
        try COCOFiles.writeReferences(
          COCOReferences(
            imageIDs: chosen.map(\.id),
            captions: Dictionary(uniqueKeysWithValues: chosen.map { ($0.id, $0.captions) }),
            fileNames: Dictionary(
              uniqueKeysWithValues: chosen.map { ($0.id, URL(fileURLWithPath: $0.path).lastPathComponent) })),
          to: referencesOut)
      }
      if let report {
        let logPath = TrainingFiles(out: modelPath).log
        try HTMLReport.write(
          result, modelPath: modelPath, dataPath: data, split: split,
          trainingLogPath: FileManager.default.fileExists(atPath: logPath) ? logPath : nil, to: report)
      }
      var object = result.jsonObject()
      if let space {
        line.show("ranking \(result.images.count) images and their captions")
        let metrics = space.retrievalMetrics(
          images: result.images.map(\.image), batchSize: batchSize,
          ranker: RetrievalRanker(rawValue: ranker)!,
          foldSize: retrievalFold)
        for (key, value) in metrics ?? [:] {
          object[key] = value
        }
        line.clear()
      }
      if json {
        StandardOutput.line(try JSONText.encode(object, escapingSlashes: true))
      } else {
        var how =
          options.sample ? "sampled at temperature \(decoding.temperature)" : "beam \(options.beamSize)"
        if let weight = options.rerankWeight, options.rerank > 0 { how += ", reranked with λ \(weight)" }
        StandardOutput.line("\(result.images.count) images of the \(split) split, \(how)")
        let keys =
          [
            "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D", "object-F1", "attribute-accuracy",
            "count-accuracy", "relation-accuracy",
          ] + RetrievalMetrics.keys
        for key in keys {
          if let value = object[key] {
            StandardOutput.line(
              key.padded(to: 20) + String(cFormat: "%.4f", value))
          }
        }
      }
    }
  }
}
