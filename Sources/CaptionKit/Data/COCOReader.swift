import FoundationEssentials
import Glibc

/// Reads COCO captions JSON (`captions_train2014.json` style), SPEC §5:
///
///     {"images": [{"id", "file_name", ...}], "annotations": [{"image_id", "caption", ...}]}
///
/// Every image of the file gets `split`. Captions keep the annotations' order. The images are under
/// `imageFolder`; when the first image is not there but COCO's naming (`COCO_val2014_…jpg`) points
/// to a subfolder of it that holds it (`imageFolder/val2014/`), that subfolder is used for the file.
enum COCOReader {
  static func read(json root: JSONObject, file: String, imageFolder: String, split: Split) throws
    -> Dataset
  {
    let top = JSONPlace(file: file, place: "")
    let imageEntries = try top.child("images").array(root["images"])
    let annotations = try top.child("annotations").array(root["annotations"])

    var ids: [Int] = []
    var names: [String] = []
    var positionOfId: [Int: Int] = [:]
    for (position, entry) in imageEntries.enumerated() {
      if position & (Interrupted.checkEvery - 1) == 0 { try Interrupted.check() }
      let place = top.child("images").index(position)
      let object = try place.object(entry)
      let id = try place.child("id").integer(object["id"])
      let name = try place.child("file_name").string(object["file_name"])
      guard !name.isEmpty else { throw place.child("file_name").fail("empty") }
      if let earlier = positionOfId[id] {
        throw place.child("id").fail("image id \(id) repeats that of images[\(earlier)]")
      }
      positionOfId[id] = position
      ids.append(id)
      names.append(name)
    }

    var captions = [[String]](repeating: [], count: ids.count)
    for (k, entry) in annotations.enumerated() {
      if k & (Interrupted.checkEvery - 1) == 0 { try Interrupted.check() }
      let place = top.child("annotations").index(k)
      let object = try place.object(entry)
      let imageId = try place.child("image_id").integer(object["image_id"])
      let caption = try place.child("caption").string(object["caption"])
      guard let position = positionOfId[imageId] else {
        throw place.child("image_id").fail("\(imageId) is not the id of any entry of images")
      }
      captions[position].append(caption)
    }

    let folder = names.first.map { resolveFolder(imageFolder, firstName: $0) } ?? imageFolder
    var images: [DatasetImage] = []
    images.reserveCapacity(ids.count)
    for position in ids.indices {
      images.append(
        DatasetImage(
          id: ids[position], path: DatasetFile.join(folder, names[position]), split: split,
          captions: captions[position]))
    }
    return Dataset(images: images, source: "coco")
  }

  /// `folder`, or `folder/<set>` when `COCO_<set>_…` is found only there.
  static func resolveFolder(_ folder: String, firstName: String) -> String {
    let manager = FileManager.default
    if manager.fileExists(atPath: DatasetFile.join(folder, firstName)) { return folder }
    let parts = firstName.split(separator: "_")
    if parts.count >= 3, parts[0] == "COCO" {
      let candidate = DatasetFile.join(folder, String(parts[1]))
      if manager.fileExists(atPath: DatasetFile.join(candidate, firstName)) { return candidate }
    }
    return folder
  }
}
