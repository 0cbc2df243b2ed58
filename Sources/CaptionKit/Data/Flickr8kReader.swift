import FoundationEssentials
import Glibc

/// Reads the Flickr8k token file (`Flickr8k.token.txt`: lines `NAME.jpg#k<TAB>caption`) and its split
/// lists (one image name per line), SPEC §5.
///
/// The lists default to `Flickr_8k.trainImages.txt`, `Flickr_8k.devImages.txt` (val) and
/// `Flickr_8k.testImages.txt` beside the token file. The train list must exist; a val or test list
/// that was not named and is absent leaves that split empty. Images in no list are left out; a
/// listed image missing from the token file, or listed twice, is an error naming the list and line.
/// The id of an image is its 0-based rank in the token file's order of first appearance.
enum Flickr8kReader {
  static let standardLists: [(Split, String)] = [
    (.train, "Flickr_8k.trainImages.txt"), (.val, "Flickr_8k.devImages.txt"),
    (.test, "Flickr_8k.testImages.txt"),
  ]

  /// The first non-empty line has the form `NAME#k<TAB>caption`.
  static func looksLikeTokenFile(_ text: String) -> Bool {
    guard let line = text.split(whereSeparator: \.isNewline).first(where: { !$0.isEmpty }),
      let tab = line.firstIndex(of: "\t")
    else { return false }
    return line[..<tab].contains("#")
  }

  static func read(
    text: String, file: String, imageFolder: String, trainList: String?, valList: String?,
    testList: String?
  ) throws -> Dataset {
    // Token file: names in order of first appearance, captions per name.
    var names: [String] = []
    var rankOfName: [String: Int] = [:]
    var captions: [[String]] = []
    var lineNumber = 0
    for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
      lineNumber += 1
      if lineNumber & (Interrupted.checkEvery - 1) == 0 { try Interrupted.check() }
      let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
      if line.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
      guard let tab = line.firstIndex(of: "\t"), let hash = line[..<tab].lastIndex(of: "#") else {
        throw CaptionError(
          .badDataset, path: file, "line \(lineNumber): expected NAME#k<TAB>caption")
      }
      let name = String(line[..<hash])
      guard !name.isEmpty, Int(line[line.index(after: hash)..<tab]) != nil else {
        throw CaptionError(
          .badDataset, path: file, "line \(lineNumber): expected NAME#k<TAB>caption")
      }
      let caption = String(line[line.index(after: tab)...])
      if let rank = rankOfName[name] {
        captions[rank].append(caption)
      } else {
        rankOfName[name] = names.count
        names.append(name)
        captions.append([caption])
      }
    }
    guard !names.isEmpty else {
      throw CaptionError(.badDataset, path: file, "the token file holds no captions")
    }

    // Split lists.
    let folder = parentFolder(of: file)
    let named: [Split: String?] = [.train: trainList, .val: valList, .test: testList]
    var splitOfRank: [Int: Split] = [:]
    var listOfRank: [Int: String] = [:]
    for (split, standardName) in standardLists {
      let listPath: String
      if let given = named[split] ?? nil {
        listPath = given
      } else {
        listPath = DatasetFile.join(folder, standardName)
        if split != .train && !FileManager.default.fileExists(atPath: listPath) { continue }
        if split == .train && !FileManager.default.fileExists(atPath: listPath) {
          throw CaptionError(
            .badDataset, path: file,
            "the train split list \(standardName) is not beside the token file (give --train-list)")
        }
      }
      let bytes = try DatasetFile.read(listPath)
      guard let listText = String(bytes: bytes, encoding: .utf8) else {
        throw CaptionError(.badDataset, path: listPath, "not UTF-8 text")
      }
      var listLine = 0
      for rawLine in listText.split(separator: "\n", omittingEmptySubsequences: false) {
        listLine += 1
        let name = rawLine.trimmingWhitespace()
        if name.isEmpty { continue }
        guard let rank = rankOfName[name] else {
          throw CaptionError(
            .badDataset, path: listPath, "line \(listLine): \(name) is not in the token file \(file)")
        }
        if let other = listOfRank[rank] {
          throw CaptionError(
            .badDataset, path: listPath, "line \(listLine): \(name) is already listed in \(other)")
        }
        splitOfRank[rank] = split
        listOfRank[rank] = listPath
      }
    }

    var images: [DatasetImage] = []
    for (rank, name) in names.enumerated() {
      guard let split = splitOfRank[rank] else { continue }
      images.append(
        DatasetImage(
          id: rank, path: DatasetFile.join(imageFolder, name), split: split, captions: captions[rank]))
    }
    return Dataset(images: images, source: "flickr8k")
  }
}
