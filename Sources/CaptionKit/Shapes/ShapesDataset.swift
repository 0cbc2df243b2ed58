import CShims
import Dispatch
import FoundationEssentials
import Glibc

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
    var random = SeededGenerator.shapes(seed: seed, stream: UInt64(index))
    let shapes = ShapesRenderer.placeShapes(imageSize: imageSize, random: &random)
    let (image, objects) = ShapesRenderer.render(shapes, imageSize: imageSize, random: &random)
    let captions = ShapesCaptioner.captions(
      for: objects, imageSize: imageSize, count: captionsPerImage, random: &random)
    return Item(image: image, objects: objects, captions: captions, prefersJPEG: random.chance(0.5))
  }

  /// A photo-sized canvas: the square scene (side = the shorter side) in the middle of a
  /// `width` × `height` image, its edge pixels continued outwards (SPEC §4's centre crop gives back
  /// the scene); objects' centres and boxes in canvas pixels.
  public static func placed(_ item: Item, width: Int, height: Int) -> Item {
    let side = item.image.width
    let (left, top) = ((width - side) / 2, (height - side) / 2)
    var pixels = [UInt8](repeating: 0, count: width * height * 3)
    for y in 0..<height {
      let sourceY = min(max(y - top, 0), side - 1)
      for x in 0..<width {
        let sourceX = min(max(x - left, 0), side - 1)
        for c in 0..<3 {
          pixels[(y * width + x) * 3 + c] = item.image.pixels[(sourceY * side + sourceX) * 3 + c]
        }
      }
    }
    var result = item
    result.image = RGBImage(width: width, height: height, pixels: pixels)
    result.objects = item.objects.map { object in
      var moved = object
      moved.x += Double(left)
      moved.y += Double(top)
      moved.bbox = zip(object.bbox, [left, top, left, top]).map { $0 + Double($1) }
      return moved
    }
    return result
  }

  /// Renders the dataset into `outputFolder`. The files are written into a temporary folder beside it
  /// (`temporaryFolder(for:)`) that is renamed into place only when complete, so a render that fails
  /// or is stopped leaves no `outputFolder` behind (and a temporary folder left by a killed render is
  /// removed first). An existing `outputFolder` must be empty, unless `replace`: then it may hold a
  /// dataset (`images/`, `captions.json`, `scenes.json`, nothing else), replaced once the new one is
  /// complete. Ctrl-C or SIGTERM stops the render: it returns false, having written nothing.
  /// `progress(done, count)` follows the images rendered; `log` receives the lines to print.
  /// `canvas`: images of that width and height instead of `imageSize` squares (`placed`; the scene's
  /// side is then the shorter one). `jpegQuality`: of the JPEG files (1–100).
  @discardableResult
  public static func generate(
    outputFolder: String, count: Int, seed: UInt64, imageSize: Int = 64, format: ShapesImageFormat,
    valFraction: Double = 0.1, testFraction: Double = 0.1, replace: Bool = false,
    canvas: (width: Int, height: Int)? = nil, jpegQuality: Int = 92, log: (String) -> Void,
    progress: (_ done: Int, _ count: Int) -> Void = { _, _ in }
  ) throws -> Bool {
    let imageSize = canvas.map { min($0.width, $0.height) } ?? imageSize
    try validate(count: count, imageSize: imageSize, valFraction: valFraction, testFraction: testFraction)
    if let canvas, max(canvas.width, canvas.height) > 4096 {
      throw CaptionError(
        .invalidArgument, path: "dataset shapes",
        "image sides must be at most 4096, got \(canvas.width)x\(canvas.height)")
    }
    guard (1...100).contains(jpegQuality) else {
      throw CaptionError(
        .invalidArgument, path: "dataset shapes", "JPEG quality must be between 1 and 100, got \(jpegQuality)"
      )
    }
    try checkOutput(outputFolder, replace: replace)
    caption_install_interrupt_handlers()
    let temporary = temporaryFolder(for: outputFolder)
    if FileManager.default.fileExists(atPath: temporary) {
      try Folders.remove(temporary)
      log("removed \(temporary), left by a render that did not finish")
    }
    do {
      try Folders.make(temporary)
      guard
        try render(
          into: temporary, count: count, seed: seed, imageSize: imageSize, canvas: canvas,
          jpegQuality: jpegQuality, format: format,
          valFraction: valFraction, testFraction: testFraction, progress: progress)
      else {
        try Folders.remove(temporary)
        return false
      }
      try moveIntoPlace(temporary, outputFolder)
    } catch {
      try? Folders.remove(temporary)
      throw error
    }
    let (valCount, testCount) = splitSizes(count: count, valFraction: valFraction, testFraction: testFraction)
    log(
      "wrote \(count) images (\(count - testCount - valCount) train, \(valCount) val, \(testCount) test), "
        + "captions.json and scenes.json to \(outputFolder)")
    return true
  }

  /// How many images go to the val and test splits.
  static func splitSizes(count: Int, valFraction: Double, testFraction: Double) -> (val: Int, test: Int) {
    let test = Int((Double(count) * testFraction).rounded())
    return (min(count - test, Int((Double(count) * valFraction).rounded())), test)
  }

  /// Where a render of `outputFolder` is built: `.NAME.partial` beside it.
  static func temporaryFolder(for outputFolder: String) -> String {
    let url = URL(fileURLWithPath: outputFolder).standardizedFileURL
    return url.deletingLastPathComponent().path + "/." + url.lastPathComponent + ".partial"
  }

  /// The files of a dataset folder: what `replace` may replace.
  static let datasetEntries: Set<String> = ["images", "captions.json", "scenes.json"]

  /// Refuses an output folder that is a file, or holds anything but (with `replace`) a dataset.
  static func checkOutput(_ folder: String, replace: Bool) throws {
    var isFolder = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) else { return }
    guard isFolder else { throw CaptionError(.io, path: folder, "exists and is not a folder") }
    let entries = try Folders.entries(folder).sorted()
    if entries.isEmpty { return }
    guard replace else {
      throw CaptionError(.io, path: folder, "already exists and is not empty (--force replaces a dataset)")
    }
    if let foreign = entries.first(where: { !datasetEntries.contains($0) }) {
      throw CaptionError(
        .io, path: folder, "holds \(foreign), which is not part of a shapes dataset: it is not replaced")
    }
  }

  /// Puts the finished `temporary` folder at `outputFolder`; a dataset there is removed after.
  static func moveIntoPlace(_ temporary: String, _ outputFolder: String) throws {
    if try Folders.entries(outputFolder).isEmpty {
      try Folders.move(temporary, to: outputFolder)  // a folder replaces an empty one
      return
    }
    let old = temporaryFolder(for: outputFolder) + ".old"
    try Folders.remove(old)
    try Folders.move(outputFolder, to: old)
    do {
      try Folders.move(temporary, to: outputFolder)
    } catch {
      try? Folders.move(old, to: outputFolder)  // the previous dataset stays
      throw error
    }
    try Folders.remove(old)
  }

  /// Writes the images, captions.json and scenes.json into `outputFolder`; false when interrupted.
  static func render(
    into outputFolder: String, count: Int, seed: UInt64, imageSize: Int,
    canvas: (width: Int, height: Int)?, jpegQuality: Int, format: ShapesImageFormat,
    valFraction: Double, testFraction: Double, progress: (Int, Int) -> Void
  ) throws -> Bool {
    let imagesFolder = outputFolder + "/images"
    try Folders.make(imagesFolder)

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
          if !results.failed && caption_interrupt_requested() == 0 {
            let square = item(index: index, seed: seed, imageSize: imageSize)
            let item = canvas.map { placed(square, width: $0.width, height: $0.height) } ?? square
            let useJPEG = format == .jpg || (format == .mixed && item.prefersJPEG)
            let number = String(index)
            let filename = "images/" + String(repeating: "0", count: max(0, digits - number.count)) + number
            do {
              let (bytes, fileExtension) = try encode(item.image, jpeg: useJPEG, quality: jpegQuality)
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
      if caption_interrupt_requested() != 0 { return false }
      start = end
      progress(start, count)
    }

    // Splits: a seeded permutation; the first images of it are test, the next val, the rest train.
    let (valCount, testCount) = splitSizes(count: count, valFraction: valFraction, testFraction: testFraction)
    var order = Array(0..<count)
    var random = SeededGenerator.shapes(seed: seed, stream: UInt64.max)
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
        "{\"image_id\":\(index),\"filename\":\(jsonString(filename)),\"width\":\(canvas?.width ?? imageSize),"
        + "\"height\":\(canvas?.height ?? imageSize),\"objects\":[\(objects.joined(separator: ","))]}"
        + (index == count - 1 ? "\n" : ",\n")
    }
    captionsJSON += "]}\n"
    scenesJSON += "]}\n"
    try AtomicFile.write(Array(captionsJSON.utf8), to: outputFolder + "/captions.json")
    try AtomicFile.write(Array(scenesJSON.utf8), to: outputFolder + "/scenes.json")
    return caption_interrupt_requested() == 0
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
      startThread {
        body(worker)
        group.leave()
      }
    }
    group.wait()
  }

  /// The one place that turns pixels into file bytes: PNG, or JPEG at `quality` (92 by default).
  static func encode(_ image: RGBImage, jpeg: Bool, quality: Int = 92) throws -> (
    bytes: [UInt8], fileExtension: String
  ) {
    jpeg ? (try JPEGWriter.encode(image, quality: quality), "jpg") : (try PNGWriter.encode(image), "png")
  }

  static func jsonString(_ text: String) -> String { JSONText.quoted(text) }

  /// Per-image results filled by the worker threads, each in its own slot.
  private final class Results: @unchecked Sendable {
    let filenames: UnsafeMutableBufferPointer<String>
    let objects: UnsafeMutableBufferPointer<[SceneObject]>
    let captions: UnsafeMutableBufferPointer<[String]>
    private let lock = Lock()
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
