import FoundationEssentials
import Glibc

/// One caption of a COCO-format results file: `{"image_id": 42, "caption": "a dog runs"}`.
public struct COCOResult: Equatable, Sendable {
  public var imageID: Int
  public var caption: String

  public init(imageID: Int, caption: String) {
    self.imageID = imageID
    self.caption = caption
  }
}

/// The reference captions of a COCO captions file
/// (`{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}`).
public struct COCOReferences: Equatable, Sendable {
  /// Image ids in file order (images listed under "images", then any only seen in annotations).
  public var imageIDs: [Int]
  /// Raw reference captions per image id (an image without annotations has an empty list).
  public var captions: [Int: [String]]
  /// `file_name` per image id, where the file gives one.
  public var fileNames: [Int: String]

  public init(imageIDs: [Int] = [], captions: [Int: [String]] = [:], fileNames: [Int: String] = [:]) {
    self.imageIDs = imageIDs
    self.captions = captions
    self.fileNames = fileNames
  }
}

/// The outcome of `COCOFiles.score`: the metrics and how many reference images had no result.
public struct COCOScoreRun: Sendable {
  public var scores: CaptionScores
  public var referencesWithoutResult: Int
}

/// Reading, checking and writing the COCO caption evaluation's JSON files (SPEC §2 `score`).
/// Every error names the file and the place; entries are counted from 0, as in the JSON array.
public enum COCOFiles {
  // MARK: Results

  public static func readResults(_ path: String) throws -> [COCOResult] {
    try parseResults(readFile(path), path: path)
  }

  /// Parses a results array; two results for one image id are an error.
  public static func parseResults(_ data: Data, path: String) throws -> [COCOResult] {
    guard case .array(let entries) = try JSONValue.parse(data, file: path, kind: .badResults) else {
      throw CaptionError(
        .badResults, path: path, "expected a JSON array of {\"image_id\", \"caption\"} objects")
    }
    var results: [COCOResult] = []
    results.reserveCapacity(entries.count)
    var firstEntry: [Int: Int] = [:]
    for (index, entry) in entries.enumerated() {
      let place = JSONPlace(file: path, place: "entry \(index)", kind: .badResults)
      let object = try place.object(entry)
      let imageID = try place.child("image_id").integer(object["image_id"])
      let caption = try place.child("caption").string(object["caption"])
      if let first = firstEntry[imageID] {
        throw CaptionError(
          .badResults, path: path,
          "entry \(index): two results for image_id \(imageID) (the first is entry \(first))")
      }
      firstEntry[imageID] = index
      results.append(COCOResult(imageID: imageID, caption: caption))
    }
    return results
  }

  public static func writeResults(_ results: [COCOResult], to path: String) throws {
    let array: [[String: Any]] = results.map { ["image_id": $0.imageID, "caption": $0.caption] }
    try writeJSON(array, to: path)
  }

  // MARK: References

  public static func readReferences(_ path: String) throws -> COCOReferences {
    try parseReferences(readFile(path), path: path)
  }

  public static func parseReferences(_ data: Data, path: String) throws -> COCOReferences {
    guard case .object(let root) = try JSONValue.parse(data, file: path) else {
      throw CaptionError(
        .badDataset, path: path, "expected a COCO captions object with \"images\" and \"annotations\"")
    }
    let top = JSONPlace(file: path, place: "")
    var references = COCOReferences()
    if let images = root["images"] {
      for (index, image) in try top.child("images").array(images).enumerated() {
        let place = top.child("images").index(index)
        let object = try place.object(image)
        let id = try place.child("id").integer(object["id"])
        guard references.captions[id] == nil else {
          throw place.fail("image id \(id) is listed twice")
        }
        references.imageIDs.append(id)
        references.captions[id] = []
        if case .string(let name)? = object["file_name"] { references.fileNames[id] = name }
      }
    }
    for (index, annotation) in try top.child("annotations").array(root["annotations"]).enumerated() {
      let place = top.child("annotations").index(index)
      let object = try place.object(annotation)
      let id = try place.child("image_id").integer(object["image_id"])
      let caption = try place.child("caption").string(object["caption"])
      if references.captions[id] == nil {
        references.imageIDs.append(id)
        references.captions[id] = []
      }
      references.captions[id]!.append(caption)
    }
    return references
  }

  /// Writes COCO captions JSON that pycocotools' `COCO` and `loadRes` accept.
  public static func writeReferences(_ references: COCOReferences, to path: String) throws {
    var images: [[String: Any]] = []
    var annotations: [[String: Any]] = []
    for id in references.imageIDs {
      images.append(["id": id, "file_name": references.fileNames[id] ?? "\(id)"])
      for caption in references.captions[id] ?? [] {
        annotations.append(["id": annotations.count + 1, "image_id": id, "caption": caption])
      }
    }
    let root: [String: Any] = [
      "info": ["description": "caption references"], "licenses": [], "type": "captions", "images": images,
      "annotations": annotations,
    ]
    try writeJSON(root, to: path)
  }

  // MARK: Scoring

  /// Scores results against references after tokenising both with `PTBTokenizer`. Only images with a
  /// result are scored; a result for an image the references do not hold (or hold without captions)
  /// is an error naming `resultsPath` and the entry.
  public static func score(
    results: [COCOResult], references: COCOReferences, resultsPath: String, referencesPath: String
  ) throws -> COCOScoreRun {
    guard !results.isEmpty else {
      throw CaptionError(.badResults, path: resultsPath, "holds no results to score")
    }
    var candidates: [Int: [String]] = [:]
    var referenceTokens: [Int: [[String]]] = [:]
    for (index, result) in results.enumerated() {
      guard let captions = references.captions[result.imageID] else {
        throw CaptionError(
          .badResults, path: resultsPath,
          "entry \(index): image_id \(result.imageID) is not in the references")
      }
      guard !captions.isEmpty else {
        throw CaptionError(
          .badResults, path: resultsPath,
          "entry \(index): image_id \(result.imageID) has no reference captions in \(referencesPath)")
      }
      guard candidates[result.imageID] == nil else {
        throw CaptionError(
          .badResults, path: resultsPath, "entry \(index): two results for image_id \(result.imageID)")
      }
      candidates[result.imageID] = PTBTokenizer.tokenize(result.caption)
      referenceTokens[result.imageID] = captions.map(PTBTokenizer.tokenize)
    }
    let scores = CaptionMetrics.score(candidates: candidates, references: referenceTokens)
    let unscored = references.imageIDs.filter { candidates[$0] == nil }.count
    return COCOScoreRun(scores: scores, referencesWithoutResult: unscored)
  }

  // MARK: Helpers

  /// Largest results or references file read (COCO's biggest captions file is ~90 MB).
  static let maximumFileBytes = Int64(JSONValue.maximumFileBytes)

  static func readFile(_ path: String) throws -> Data {
    Data(
      try RegularFile.read(path, maximumBytes: Int(maximumFileBytes), what: "a results or references file"))
  }

  static func writeJSON(_ object: Any, to path: String) throws {
    let data: Data
    do {
      data = Data(try JSONText.encode(object).utf8)
    } catch {
      throw CaptionError(.io, path: path, "cannot encode JSON: \(error)")
    }
    try AtomicFile.write(data, to: path)
  }
}
