import XCTest

@testable import CaptionKit

/// `caption evaluate`'s library path on a tiny trained model: captions a split, writes COCO results
/// and references that `score` reads back to the same numbers, and a self-contained report.
final class EvaluationTests: XCTestCase {
  func testEvaluateWritesFilesThatScoreToTheSameNumbers() throws {
    let folder = temporaryFolder()
    var options = TrainerTests.tinyOptions(out: folder + "/m.safetensors")
    options.epochs = 3
    _ = try Trainer(options: options, log: { _ in }).run(resume: false)
    let captioner = try Captioner(modelPath: folder + "/m.safetensors")

    let dataset = try Dataset.load(data: TrainerTests.dataFolder, evaluating: .val)
    let images = dataset.split(.val)
    let scenes = try Scenes.load(path: try XCTUnwrap(dataset.scenesPath))
    var decoding = DecodingOptions()
    decoding.beamSize = 2
    let result = Evaluator.run(captioner: captioner, images: images, options: decoding, scenes: scenes)
    XCTAssertEqual(result.images.count, images.count)
    XCTAssertNotNil(result.grounded)
    let json = result.jsonObject()
    for key in ["BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr-D", "object-F1", "relation-accuracy"] {
      XCTAssertNotNil(json[key], key)
    }

    let resultsPath = folder + "/results.json"
    let referencesPath = folder + "/refs.json"
    try COCOFiles.writeResults(
      result.images.map { COCOResult(imageID: $0.image.id, caption: $0.tokens.joined(separator: " ")) },
      to: resultsPath)
    try COCOFiles.writeReferences(
      COCOReferences(
        imageIDs: images.map(\.id), captions: Dictionary(uniqueKeysWithValues: images.map { ($0.id, $0.captions) }),
        fileNames: Dictionary(uniqueKeysWithValues: images.map { ($0.id, $0.path) })),
      to: referencesPath)
    let rescored = try COCOFiles.score(
      results: COCOFiles.readResults(resultsPath), references: COCOFiles.readReferences(referencesPath),
      resultsPath: resultsPath, referencesPath: referencesPath)
    XCTAssertEqual(rescored.scores.ciderD, result.scores.ciderD, accuracy: 1e-9)
    XCTAssertEqual(rescored.scores.bleu[3], result.scores.bleu[3], accuracy: 1e-9)

    let report = folder + "/report.html"
    try HTMLReport.write(
      result, modelPath: "m.safetensors", dataPath: "shapes", split: "val",
      trainingLogPath: TrainingFiles(out: folder + "/m.safetensors").log, to: report)
    let html = try String(contentsOfFile: report, encoding: .utf8)
    XCTAssertEqual(html.components(separatedBy: "class=\"card\"").count - 1, images.count)
    XCTAssertEqual(html.components(separatedBy: "data:image/png;base64,").count - 1, images.count)
    XCTAssertTrue(html.contains("<polyline"), "training curves")
    XCTAssertTrue(html.contains("CIDEr-D"))
  }
}
