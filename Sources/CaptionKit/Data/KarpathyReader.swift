import FoundationEssentials
import Glibc

/// Reads a Karpathy-split JSON (the layout of `dataset_flickr8k.json`, `dataset_coco.json` and of the
/// `captions.json` that `caption dataset shapes` writes), SPEC §5:
///
///     {"images": [{"filename", "filepath"?, "split", "imgid"?, "cocoid"?,
///                  "sentences": [{"raw", "tokens"}]}]}
///
/// `restval` counts as train; the id is `cocoid`, else `imgid`, else the 0-based position; the path is
/// `imageFolder/filepath/filename`. The `tokens` are ignored (SPEC §6 re-tokenises `raw`).
enum KarpathyReader {
  static func read(json root: JSONObject, file: String, imageFolder: String) throws -> Dataset {
    let top = JSONPlace(file: file, place: "")
    let entries = try top.child("images").array(root["images"])
    var images: [DatasetImage] = []
    images.reserveCapacity(entries.count)
    var positionOfId: [Int: Int] = [:]
    for (position, entry) in entries.enumerated() {
      if position & (Interrupted.checkEvery - 1) == 0 { try Interrupted.check() }
      let place = top.child("images").index(position)
      let object = try place.object(entry)
      let filename = try place.child("filename").string(object["filename"])
      guard !filename.isEmpty else { throw place.child("filename").fail("empty") }
      let filepath = try object["filepath"].map { try place.child("filepath").string($0) } ?? ""
      let splitName = try place.child("split").string(object["split"])
      let split: Split
      switch splitName {
      case "train", "restval": split = .train
      case "val": split = .val
      case "test": split = .test
      default:
        throw place.child("split").fail(
          "unknown split \"\(splitName)\" (expected train, restval, val or test)")
      }
      let id =
        try place.child("cocoid").optionalInteger(object["cocoid"])
        ?? place.child("imgid").optionalInteger(object["imgid"]) ?? position
      if let earlier = positionOfId[id] {
        throw place.fail("image id \(id) repeats that of images[\(earlier)]")
      }
      positionOfId[id] = position
      let sentencesPlace = place.child("sentences")
      let sentences = try sentencesPlace.array(object["sentences"])
      var captions: [String] = []
      captions.reserveCapacity(sentences.count)
      for (k, sentence) in sentences.enumerated() {
        let sentencePlace = sentencesPlace.index(k)
        let fields = try sentencePlace.object(sentence)
        captions.append(try sentencePlace.child("raw").string(fields["raw"]))
      }
      images.append(
        DatasetImage(
          id: id, path: DatasetFile.join(imageFolder, filepath, filename), split: split,
          captions: captions))
    }
    return Dataset(images: images, source: "karpathy")
  }
}
