import FoundationEssentials
import Glibc

/// The split an image belongs to (SPEC §5). Karpathy's `restval` is read as `train`.
public enum Split: String, Sendable, CaseIterable {
  case train, val, test
}

/// One image of a dataset and its raw reference captions.
public struct DatasetImage: Equatable, Sendable {
  /// The image id: COCO/Karpathy `cocoid` or `imgid`, the position in the file otherwise (SPEC §5).
  public var id: Int
  /// Where the image is: absolute or relative to the current directory, ready to open.
  public var path: String
  public var split: Split
  /// The captions as written in the file (not tokenised; SPEC §6 re-tokenises them).
  public var captions: [String]

  public init(id: Int, path: String, split: Split, captions: [String]) {
    self.id = id
    self.path = path
    self.split = split
    self.captions = captions
  }
}

/// A captioning dataset in any of SPEC §5's formats, read into one list of images.
public struct Dataset: Sendable {
  public var images: [DatasetImage]
  /// The format it was read from: `directory`, `karpathy`, `coco` or `flickr8k`.
  public var source: String
  /// `scenes.json` beside a dataset directory's `captions.json`, when present (SPEC §9).
  public var scenesPath: String?

  public init(images: [DatasetImage], source: String, scenesPath: String? = nil) {
    self.images = images
    self.source = source
    self.scenesPath = scenesPath
  }

  /// One line for a log: `karpathy: 6000 train, 1000 val, 1000 test images, 40000 captions`.
  public var summary: String {
    let counts = Split.allCases.map { s in "\(images.lazy.filter { $0.split == s }.count) \(s.rawValue)" }
    let captions = images.reduce(0) { $0 + $1.captions.count }
    return "\(source): \(counts.joined(separator: ", ")) images, \(captions) captions"
  }

  /// The images of one split, in file order.
  public func split(_ s: Split) -> [DatasetImage] { images.filter { $0.split == s } }

  /// The images of one split; an error naming `data` when it has none.
  public func nonEmptySplit(_ s: Split, data: String) throws -> [DatasetImage] {
    let chosen = split(s)
    guard !chosen.isEmpty else {
      throw CaptionError(.badDataset, path: data, "the \(s.rawValue) split has no images")
    }
    return chosen
  }

  /// Reads a dataset, detecting its format (SPEC §5):
  /// - a directory holding `captions.json` (Karpathy layout; images relative to the directory,
  ///   or to `images` when given; `scenes.json` beside it becomes `scenesPath`);
  /// - a Karpathy-split JSON (`"images"` whose entries have `"sentences"`), images under `images`
  ///   (default: the JSON file's folder), joined with `filepath` when present;
  /// - COCO captions JSON (`"annotations"`): the file's images are `train`, or all `evaluating`'s
  ///   split when that is given (for `caption evaluate`, the file evaluated); images under `images`
  ///   (default: the JSON file's folder);
  /// - a Flickr8k token file (`NAME#k<TAB>caption` lines), split lists beside it under their
  ///   standard names unless `trainList`/`valList`/`testList` name them; images under `images`
  ///   (default: the token file's folder).
  ///
  /// `valData`, when given, is read the same way and its images, all of them, become the `val`
  /// split, replacing any `val` images of `data` (for COCO, whose files hold one split each).
  ///
  /// `evaluating == nil` means training: the `train` split must not be empty. Otherwise the
  /// evaluated split must not be empty. Any malformed file is a `.badDataset` error naming the file
  /// and the place (`images[12].sentences: missing`).
  public static func load(
    data: String, images: String? = nil, valData: String? = nil, trainList: String? = nil,
    valList: String? = nil, testList: String? = nil, evaluating: Split? = nil
  ) throws -> Dataset {
    var dataset = try loadOne(
      data: data, images: images, trainList: trainList, valList: valList, testList: testList,
      wholeFileSplit: evaluating ?? .train)
    if let valData {
      let validation = try loadOne(
        data: valData, images: images, trainList: nil, valList: nil, testList: nil,
        wholeFileSplit: .val)
      dataset.images.removeAll { $0.split == .val }
      var seen = Set(dataset.images.map(\.id))
      for var image in validation.images {
        guard seen.insert(image.id).inserted else {
          throw CaptionError(
            .badDataset, path: valData, "image id \(image.id) also appears in \(data)")
        }
        image.split = .val
        dataset.images.append(image)
      }
    }
    guard !dataset.images.isEmpty else {
      throw CaptionError(.badDataset, path: data, "the dataset has no images")
    }
    let required = evaluating ?? .train
    _ = try dataset.nonEmptySplit(required, data: data)
    return dataset
  }

  /// One file or directory, format detected from its content.
  static func loadOne(
    data: String, images: String?, trainList: String?, valList: String?, testList: String?,
    wholeFileSplit: Split
  ) throws -> Dataset {
    var isDirectory = false
    guard FileManager.default.fileExists(atPath: data, isDirectory: &isDirectory) else {
      throw CaptionError(.unreadable, path: data, "no such file or directory")
    }
    if isDirectory {
      let captions = data + "/captions.json"
      guard FileManager.default.fileExists(atPath: captions) else {
        throw CaptionError(
          .badDataset, path: data, "a dataset directory must hold captions.json (SPEC §5)")
      }
      let json = try DatasetFile.readJSON(captions)
      var dataset = try KarpathyReader.read(json: json, file: captions, imageFolder: images ?? data)
      dataset.source = "directory"
      let scenes = data + "/scenes.json"
      if FileManager.default.fileExists(atPath: scenes) { dataset.scenesPath = scenes }
      return dataset
    }
    var bytes = try DatasetFile.read(data)
    if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }  // a UTF-8 byte-order mark
    let firstByte = bytes.first { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }
    let folder = parentFolder(of: data)
    if firstByte == UInt8(ascii: "{") || firstByte == UInt8(ascii: "[") {
      guard case .object(let root) = try JSONValue.parse(bytes, file: data) else {
        throw CaptionError(.badDataset, path: data, "the top level must be a JSON object")
      }
      if root["annotations"] != nil {
        return try COCOReader.read(
          json: root, file: data, imageFolder: images ?? folder, split: wholeFileSplit)
      }
      if root["images"] != nil {
        return try KarpathyReader.read(json: root, file: data, imageFolder: images ?? folder)
      }
      throw CaptionError(
        .badDataset, path: data,
        "neither a Karpathy-split JSON (\"images\" with \"sentences\") nor COCO captions JSON (\"annotations\")"
      )
    }
    guard let text = String(bytes: bytes, encoding: .utf8) else {
      throw CaptionError(.badDataset, path: data, "not UTF-8 text, nor a JSON dataset")
    }
    if Flickr8kReader.looksLikeTokenFile(text) {
      return try Flickr8kReader.read(
        text: text, file: data, imageFolder: images ?? folder, trainList: trainList,
        valList: valList, testList: testList)
    }
    throw CaptionError(
      .badDataset, path: data,
      "not a dataset: expected a directory with captions.json, a Karpathy or COCO JSON file, or a Flickr8k token file"
    )
  }
}

/// Reading and parsing dataset files with errors that name the file and the place.
enum DatasetFile {
  /// Larger dataset files are refused rather than read into memory (dataset_coco.json is ~150 MB).
  static let maximumBytes = JSONValue.maximumFileBytes

  /// The bytes of a regular file (a device or pipe could be endless; a folder is not a file).
  static func read(_ path: String) throws -> [UInt8] {
    try RegularFile.read(path, maximumBytes: maximumBytes, what: "a dataset file")
  }

  static func readJSON(_ path: String) throws -> JSONObject {
    guard case .object(let root) = try JSONValue.parse(read(path), file: path) else {
      throw CaptionError(.badDataset, path: path, "the top level must be a JSON object")
    }
    return root
  }

  /// Joins path parts with single slashes; an empty folder leaves the name as is.
  static func join(_ parts: String...) -> String {
    var result = ""
    for part in parts where !part.isEmpty {
      if result.isEmpty {
        result = part
      } else {
        result += (result.hasSuffix("/") ? "" : "/") + part
      }
    }
    return result
  }
}
