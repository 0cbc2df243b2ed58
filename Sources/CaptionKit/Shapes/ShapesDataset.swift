import Dispatch
import Foundation

/// How `caption dataset shapes` stores its images.
public enum ShapesImageFormat: String, CaseIterable, Sendable {
  case png, jpg, mixed
}

/// Writes the synthetic shapes dataset (SPEC §9): `images/NNNNNN.<ext>`, `captions.json` (Karpathy
/// layout, SPEC §5, filenames relative to the folder) and `scenes.json` (each scene's objects).
/// Image i depends only on (seed, i): rendered in parallel, the output is the same byte for byte.
public enum ShapesDataset {
  public static let captionsPerImage = 5

  /// Everything about image `index` of a dataset seeded `seed`.
  public struct Item: Sendable {
    public var image: RGBImage
    public var objects: [SceneObject]
    public var captions: [String]
    /// For `mixed`: whether this image is stored as JPEG.
    public var prefersJPEG: Bool
  }

  /// Renders image `index` (scene, pixels, captions) without writing anything.
  public static func item(index: Int, seed: UInt64, imageSize: Int) -> Item {
    var random = ShapesRandom(seed: seed, stream: UInt64(index))
    let shapes = ShapesRenderer.placeShapes(imageSize: imageSize, random: &random)
    let (image, objects) = ShapesRenderer.render(shapes, imageSize: imageSize, random: &random)
    let captions = ShapesCaptioner.captions(
      for: objects, imageSize: imageSize, count: captionsPerImage, random: &random)
    return Item(image: image, objects: objects, captions: captions, prefersJPEG: random.chance(0.5))
  }

  public static func generate(
    outputFolder: String, count: Int, seed: UInt64, imageSize: Int = 64, format: ShapesImageFormat,
    valFraction: Double = 0.1, testFraction: Double = 0.1, log: (String) -> Void
  ) throws {
    try validate(count: count, imageSize: imageSize, valFraction: valFraction, testFraction: testFraction)
    let imagesFolder = outputFolder + "/images"
    try AtomicFile.makeFolder(outputFolder)
    try AtomicFile.makeFolder(imagesFolder)

    let digits = max(6, String(count - 1).count)
    let results = Results(count: count)
    defer { results.release() }
    // More threads than cores: most of the time goes to waiting for each file's fsync.
    let workers = 8
    let batch = 1000
    var start = 0
    while start < count {
      let (first, end) = (start, min(count, start + batch))
      runThreads(workers) { worker in
        var index = first + worker
        while index < end {
          if !results.failed {
            let item = item(index: index, seed: seed, imageSize: imageSize)
            let useJPEG = format == .jpg || (format == .mixed && item.prefersJPEG)
            let number = String(index)
            let filename = "images/" + String(repeating: "0", count: max(0, digits - number.count)) + number
            do {
              let (bytes, fileExtension) = try encode(item.image, jpeg: useJPEG)
              try AtomicFile.write(bytes, to: outputFolder + "/" + filename + "." + fileExtension)
              results.store(index, filename: filename + "." + fileExtension, item: item)
            } catch {
              results.fail(error)
            }
          }
          index += workers
        }
      }
      if let error = results.firstError { throw error }
      start = end
      log("rendered \(start)/\(count) images")
    }

    // Splits: a seeded permutation; the first images of it are test, the next val, the rest train.
    let testCount = Int((Double(count) * testFraction).rounded())
    let valCount = min(count - testCount, Int((Double(count) * valFraction).rounded()))
    var order = Array(0..<count)
    var random = ShapesRandom(seed: seed, stream: UInt64.max)
    random.shuffle(&order)
    var splits = [String](repeating: "train", count: count)
    for (rank, index) in order.enumerated() {
      if rank < testCount {
        splits[index] = "test"
      } else if rank < testCount + valCount {
        splits[index] = "val"
      }
    }

    var captionsJSON = "{\"dataset\":\"shapes\",\"images\":[\n"
    var scenesJSON = "{\"images\":[\n"
    var sentenceId = 0
    for index in 0..<count {
      let filename = results.filenames[index]
      let sentences = results.captions[index].map { raw -> String in
        defer { sentenceId += 1 }
        let tokens = PTBTokenizer.tokenize(raw).map(jsonString).joined(separator: ",")
        return
          "{\"raw\":\(jsonString(raw)),\"tokens\":[\(tokens)],\"imgid\":\(index),\"sentid\":\(sentenceId)}"
      }
      captionsJSON +=
        "{\"filename\":\(jsonString(filename)),\"split\":\"\(splits[index])\",\"imgid\":\(index),"
        + "\"sentences\":[\(sentences.joined(separator: ","))]}" + (index == count - 1 ? "\n" : ",\n")
      let objects = results.objects[index].map { o in
        "{\"shape\":\(jsonString(o.shape)),\"color\":\(jsonString(o.color)),\"size\":\(jsonString(o.size)),"
          + "\"x\":\(o.x),\"y\":\(o.y),\"bbox\":[\(o.bbox.map { String(Int($0)) }.joined(separator: ","))]}"
      }
      scenesJSON +=
        "{\"image_id\":\(index),\"filename\":\(jsonString(filename)),\"width\":\(imageSize),"
        + "\"height\":\(imageSize),\"objects\":[\(objects.joined(separator: ","))]}"
        + (index == count - 1 ? "\n" : ",\n")
    }
    captionsJSON += "]}\n"
    scenesJSON += "]}\n"
    try AtomicFile.write(Array(captionsJSON.utf8), to: outputFolder + "/captions.json")
    try AtomicFile.write(Array(scenesJSON.utf8), to: outputFolder + "/scenes.json")
    log(
      "wrote \(count) images (\(count - testCount - valCount) train, \(valCount) val, \(testCount) test), "
        + "captions.json and scenes.json to \(outputFolder)")
  }

  static func validate(count: Int, imageSize: Int, valFraction: Double, testFraction: Double) throws {
    let subject = "dataset shapes"
    guard count >= 1 && count <= 1_000_000 else {
      throw CaptionError(
        .invalidArgument, path: subject, "count must be between 1 and 1000000, got \(count)")
    }
    guard imageSize >= 16 && imageSize <= 1024 else {
      throw CaptionError(
        .invalidArgument, path: subject, "image size must be between 16 and 1024, got \(imageSize)")
    }
    guard valFraction.isFinite, testFraction.isFinite, valFraction >= 0, testFraction >= 0,
      valFraction + testFraction <= 1
    else {
      throw CaptionError(
        .invalidArgument, path: subject,
        "split fractions must be in [0, 1] with val + test ≤ 1, got val \(valFraction), test \(testFraction)")
    }
  }

  /// Runs `body(0..<count)` on `count` threads and waits for them all.
  static func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for worker in 0..<count {
      group.enter()
      Thread {
        body(worker)
        group.leave()
      }.start()
    }
    group.wait()
  }

  /// The one place that turns pixels into file bytes: PNG, or JPEG at quality 92.
  static func encode(_ image: RGBImage, jpeg: Bool) throws -> (bytes: [UInt8], fileExtension: String) {
    jpeg ? (try JPEGWriter.encode(image, quality: 92), "jpg") : (try PNGWriter.encode(image), "png")
  }

  static func jsonString(_ text: String) -> String { JSONText.quoted(text) }

  /// Per-image results filled by the worker threads, each in its own slot.
  private final class Results: @unchecked Sendable {
    let filenames: UnsafeMutableBufferPointer<String>
    let objects: UnsafeMutableBufferPointer<[SceneObject]>
    let captions: UnsafeMutableBufferPointer<[String]>
    private let lock = NSLock()
    private var error: Error?

    init(count: Int) {
      filenames = .allocate(capacity: count)
      filenames.initialize(repeating: "")
      objects = .allocate(capacity: count)
      objects.initialize(repeating: [])
      captions = .allocate(capacity: count)
      captions.initialize(repeating: [])
    }

    func release() {
      filenames.deinitialize()
      filenames.deallocate()
      objects.deinitialize()
      objects.deallocate()
      captions.deinitialize()
      captions.deallocate()
    }

    func store(_ index: Int, filename: String, item: Item) {
      filenames[index] = filename
      objects[index] = item.objects
      captions[index] = item.captions
    }

    func fail(_ error: Error) {
      lock.lock()
      if self.error == nil { self.error = error }
      lock.unlock()
    }

    var failed: Bool {
      lock.lock()
      defer { lock.unlock() }
      return error != nil
    }

    var firstError: Error? {
      lock.lock()
      defer { lock.unlock() }
      return error
    }
  }
}
