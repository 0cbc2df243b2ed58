import CShims
import Foundation
import XCTest

@testable import CaptionKit

final class ShapesTests: XCTestCase {
  // MARK: Determinism

  func testSameSeedSameSceneDifferentSeedDifferentScene() {
    for index in [0, 1, 17, 999] {
      let a = ShapesDataset.item(index: index, seed: 42, imageSize: 64)
      let b = ShapesDataset.item(index: index, seed: 42, imageSize: 64)
      XCTAssertEqual(a.image, b.image)
      XCTAssertEqual(a.objects, b.objects)
      XCTAssertEqual(a.captions, b.captions)
      let c = ShapesDataset.item(index: index, seed: 43, imageSize: 64)
      XCTAssertNotEqual(a.image.pixels, c.image.pixels)
    }
    // Neighbouring images of one seed differ too.
    XCTAssertNotEqual(
      ShapesDataset.item(index: 0, seed: 42, imageSize: 64).image,
      ShapesDataset.item(index: 1, seed: 42, imageSize: 64).image)
  }

  /// A fingerprint of the first images of seed 1, so a change in the renderer's output (which would
  /// change every dataset made with a seed) is noticed. FNV-1a over pixels and captions.
  func testRenderedBytesArePinned() {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    func mix(_ byte: UInt8) {
      hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
    }
    for index in 0..<20 {
      let item = ShapesDataset.item(index: index, seed: 1, imageSize: 64)
      item.image.pixels.forEach(mix)
      item.captions.joined(separator: "|").utf8.forEach(mix)
    }
    XCTAssertEqual(hash, ShapesTests.pinnedHash, "renderer output changed: update the pin only on purpose")
  }
  static let pinnedHash: UInt64 = 4_691_722_152_397_493_788

  /// The files of a small mixed dataset for seed 5, fingerprinted: scenes, captions, the choice of
  /// PNG or JPEG per image and the split of each image all come from the seeded streams.
  func testGeneratedFilesArePinned() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try ShapesDataset.generate(outputFolder: folder, count: 25, seed: 5, format: .mixed, log: { _ in })
    let pins: [(file: String, hash: UInt64)] = [
      ("captions.json", 11_798_837_043_295_996_189), ("scenes.json", 703_877_383_086_117_536),
    ]
    for (file, pinned) in pins {
      var hash: UInt64 = 0xcbf2_9ce4_8422_2325
      for byte in FileManager.default.contents(atPath: folder + "/" + file) ?? Data() {
        hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
      }
      XCTAssertEqual(hash, pinned, file)
    }
  }

  func testGenerateIsByteIdenticalForOneSeed() throws {
    let first = temporaryFolder()
    let second = temporaryFolder()
    let other = temporaryFolder()
    defer { for folder in [first, second, other] { try? FileManager.default.removeItem(atPath: folder) } }
    try ShapesDataset.generate(outputFolder: first, count: 25, seed: 5, format: .png, log: { _ in })
    try ShapesDataset.generate(outputFolder: second, count: 25, seed: 5, format: .png, log: { _ in })
    try ShapesDataset.generate(outputFolder: other, count: 25, seed: 6, format: .png, log: { _ in })
    let files = try FileManager.default.subpathsOfDirectory(atPath: first).sorted()
    XCTAssertEqual(files, try FileManager.default.subpathsOfDirectory(atPath: second).sorted())
    for file in files where !file.hasSuffix("images") {
      XCTAssertEqual(
        FileManager.default.contents(atPath: first + "/" + file),
        FileManager.default.contents(atPath: second + "/" + file), file)
    }
    XCTAssertNotEqual(
      FileManager.default.contents(atPath: first + "/scenes.json"),
      FileManager.default.contents(atPath: other + "/scenes.json"))
  }

  // MARK: Captions

  /// Every caption of a few hundred scenes: at most 19 tokens, every object mentioned (precision and
  /// recall 1), and every stated size, count and relation true: a perfect grounded score.
  func testGeneratedCaptionsAreShortCompleteAndTrue() {
    var total = GroundedScores()
    var structures = Set<String>()
    for index in 0..<400 {
      let item = ShapesDataset.item(index: index, seed: 9, imageSize: 64)
      XCTAssertFalse(item.objects.isEmpty)
      XCTAssertEqual(item.captions.count, 5)
      let scene = Scene(imageId: index, filename: "", objects: item.objects)
      for caption in item.captions {
        let tokens = PTBTokenizer.tokenize(caption)
        XCTAssertLessThanOrEqual(tokens.count, 19, caption)
        XCTAssertEqual(ShapesCaptioner.wordCount(caption), tokens.count, caption)
        let scores = GroundedEvaluation.score(tokens: tokens, scene: scene)
        XCTAssertEqual(scores.matchedObjects, item.objects.count, "not every object mentioned: \(caption)")
        XCTAssertEqual(scores.mentionedObjects, item.objects.count, "extra objects claimed: \(caption)")
        XCTAssertEqual(scores.sizeCorrect, scores.sizeTotal, caption)
        XCTAssertEqual(scores.countCorrect, scores.countTotal, caption)
        XCTAssertEqual(scores.relationCorrect, scores.relationTotal, caption)
        XCTAssertTrue(GroundedEvaluation.wrongWords(tokens: tokens, scene: scene).isEmpty, caption)
        total = total + scores
        // The caption's shape with the object words removed, to see the grammar's variety.
        let skeleton = tokens.filter {
          GroundedParser.colorWords[$0] == nil && GroundedParser.shapeWords[$0] == nil
            && GroundedParser.sizeWords[$0] == nil
        }
        structures.insert(skeleton.joined(separator: " "))
      }
    }
    XCTAssertEqual(total.objectF1, 1)
    XCTAssertEqual(total.attributeAccuracy, 1)
    XCTAssertEqual(total.countAccuracy, 1)
    XCTAssertEqual(total.relationAccuracy, 1)
    // The grammar really exercises every check, and is not one template.
    XCTAssertGreaterThan(total.sizeTotal, 1000)
    XCTAssertGreaterThan(total.countTotal, 100)
    XCTAssertGreaterThan(total.relationTotal, 1000)
    XCTAssertGreaterThan(structures.count, 300)
  }

  func testVocabularyIsModest() {
    var words = Set<String>()
    for index in 0..<1000 {
      for caption in ShapesDataset.item(index: index, seed: 3, imageSize: 64).captions {
        words.formUnion(PTBTokenizer.tokenize(caption))
      }
    }
    XCTAssertGreaterThan(words.count, 60)
    XCTAssertLessThan(words.count, 200)
  }

  func testEveryRelationKindIsStated() {
    var seen = Set<String>()
    for index in 0..<300 {
      for caption in ShapesDataset.item(index: index, seed: 4, imageSize: 64).captions {
        for relation in GroundedParser.parse(PTBTokenizer.tokenize(caption)).relations {
          switch relation.kind {
          case .pair(let pair): seen.insert(pair.rawValue)
          case .region(let region): seen.insert(region.rawValue)
          case .between: seen.insert("between")
          }
        }
      }
    }
    let expected = Set(PairRelation.allCases.map(\.rawValue) + Region.allCases.map(\.rawValue) + ["between"])
    XCTAssertEqual(seen, expected)
  }

  // MARK: Rendering

  /// Each shape's inside test: the centre is inside, nothing outside the square [−1, 1]² (the area
  /// the renderer scans) is inside, and the shapes differ from one another.
  func testShapeGeometry() {
    var masks: [ShapeKind: [Bool]] = [:]
    for shape in ShapeKind.allCases {
      XCTAssertTrue(shape.contains(0, 0), "\(shape) centre")
      var mask: [Bool] = []
      for j in 0..<49 {
        for i in 0..<49 {
          let u = Float(i - 24) / 20
          let v = Float(j - 24) / 20
          let inside = shape.contains(u, v)
          if abs(u) > 1 || abs(v) > 1 { XCTAssertFalse(inside, "\(shape) at (\(u), \(v))") }
          mask.append(inside)
        }
      }
      let area = mask.filter { $0 }.count
      XCTAssertGreaterThan(area, 300, "\(shape) too thin")  // a quarter of the 41×41 points in [−1, 1]²
      masks[shape] = mask
    }
    for a in ShapeKind.allCases {
      for b in ShapeKind.allCases where a != b {
        let differing = zip(masks[a]!, masks[b]!).filter { $0 != $1 }.count
        XCTAssertGreaterThan(differing, 60, "\(a) and \(b) look alike")
      }
    }
  }

  /// One square on a plain background, checked pixel by pixel: inside is the square's colour,
  /// outside the background, and edge pixels blend with 4×4 coverage.
  func testSquareRenderingHandComputed() {
    // Half-side 0.78·r = 7.8 pixels around (32, 32): covers x in [24.2, 39.8].
    let square = PlacedShape(
      shape: .square, color: .red, size: .medium, rgb: [200, 0, 0], x: 32, y: 32, radius: 10)
    var pixels = [UInt8](repeating: 100, count: 64 * 64 * 3)
    let box = pixels.withUnsafeMutableBufferPointer { ShapesRenderer.drawShape(square, into: $0, side: 64) }
    XCTAssertEqual(box, [24, 24, 40, 40])
    func red(_ x: Int, _ y: Int) -> UInt8 { pixels[(y * 64 + x) * 3] }
    XCTAssertEqual(red(32, 32), 200)
    XCTAssertEqual(red(25, 30), 200)
    XCTAssertEqual(red(23, 32), 100)
    XCTAssertEqual(red(40, 32), 100)
    // Column 24 spans [24, 25): subsample centres 24.125, 24.375, 24.625, 24.875; those ≥ 24.2 are
    // inside, 3 of 4 per row: coverage 12/16 → (100·4 + 200·12 + 8) / 16 = 175.
    XCTAssertEqual(red(24, 32), 175)
    // Column 39 spans [39, 40): 39.125, 39.375, 39.625 ≤ 39.8: 12/16 again.
    XCTAssertEqual(red(39, 32), 175)
    // Corner pixel (24, 24): 3×3 of 16 → (100·7 + 200·9 + 8) / 16 = 156.
    XCTAssertEqual(red(24, 24), 156)
    XCTAssertEqual(pixels[(32 * 64 + 32) * 3 + 1], 0)
  }

  func testScenesRespectTheirRules() {
    var counts = [Int](repeating: 0, count: 5)
    var backgrounds = 0
    for index in 0..<500 {
      var random = SeededGenerator.shapes(seed: 77, stream: UInt64(index))
      let shapes = ShapesRenderer.placeShapes(imageSize: 64, random: &random)
      XCTAssertTrue((1...4).contains(shapes.count))
      counts[shapes.count] += 1
      for (i, a) in shapes.enumerated() {
        XCTAssertGreaterThanOrEqual(a.x - a.radius, 1)
        XCTAssertLessThanOrEqual(a.x + a.radius, 63)
        for b in shapes[(i + 1)...] {
          let distance = ((a.x - b.x) * (a.x - b.x) + (a.y - b.y) * (a.y - b.y)).squareRoot()
          XCTAssertGreaterThanOrEqual(distance, 0.75 * (a.radius + b.radius) - 1e-9)
          if a.shape == b.shape && a.color == b.color { XCTAssertEqual(a.size, b.size) }
        }
      }
      let (image, objects) = ShapesRenderer.render(shapes, imageSize: 64, random: &random)
      XCTAssertEqual(objects.count, shapes.count)
      for object in objects {
        XCTAssertEqual(object.bbox.count, 4)
        XCTAssertTrue(object.bbox[0] <= object.x && object.x <= object.bbox[2])
        XCTAssertTrue(object.bbox[1] <= object.y && object.y <= object.bbox[3])
      }
      if Set(image.pixels[0..<192]).count > 3 { backgrounds += 1 }
    }
    XCTAssertTrue(counts[1...4].allSatisfy { $0 > 50 }, "\(counts)")
    XCTAssertGreaterThan(backgrounds, 100)  // noisy, gradient or textured first rows
  }

  // MARK: Writing the dataset

  func testGenerateWritesKarpathyCaptionsAndScenes() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: folder) }
    var lines: [String] = []
    try ShapesDataset.generate(
      outputFolder: folder, count: 40, seed: 12, imageSize: 48, format: .png, valFraction: 0.25,
      testFraction: 0.1, log: { lines.append($0) })
    XCTAssertFalse(lines.isEmpty)

    let data = try XCTUnwrap(FileManager.default.contents(atPath: folder + "/captions.json"))
    let root = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    XCTAssertEqual(root["dataset"] as? String, "shapes")
    let images = try XCTUnwrap(root["images"] as? [[String: Any]])
    XCTAssertEqual(images.count, 40)
    var splits: [String: Int] = [:]
    let scenes = try Scenes.load(path: folder + "/scenes.json")
    XCTAssertEqual(scenes.count, 40)
    for (position, image) in images.enumerated() {
      let filename = try XCTUnwrap(image["filename"] as? String)
      let imgid = try XCTUnwrap(image["imgid"] as? Int)
      XCTAssertEqual(imgid, position)
      let split = try XCTUnwrap(image["split"] as? String)
      splits[split, default: 0] += 1
      let attributes = try FileManager.default.attributesOfItem(atPath: folder + "/" + filename)
      XCTAssertGreaterThan((attributes[.size] as? Int) ?? 0, 0)
      let sentences = try XCTUnwrap(image["sentences"] as? [[String: Any]])
      XCTAssertEqual(sentences.count, 5)
      let scene = try XCTUnwrap(scenes[imgid])
      XCTAssertEqual(scene.filename, filename)
      XCTAssertEqual(scene.width, 48)
      for sentence in sentences {
        let raw = try XCTUnwrap(sentence["raw"] as? String)
        let tokens = try XCTUnwrap(sentence["tokens"] as? [String])
        XCTAssertEqual(tokens, PTBTokenizer.tokenize(raw))
        let scores = GroundedEvaluation.score(tokens: tokens, scene: scene)
        XCTAssertEqual(scores.matchedObjects, scene.objects.count)
      }
      // The scene agrees with the image the renderer makes for this index.
      XCTAssertEqual(scene.objects, ShapesDataset.item(index: imgid, seed: 12, imageSize: 48).objects)
      for object in scene.objects {
        XCTAssertTrue(object.bbox.allSatisfy { $0 >= 0 && $0 <= 48 })
      }
    }
    XCTAssertEqual(splits, ["train": 26, "val": 10, "test": 4])
  }

  /// What the project's dataset reader and image decoder make of a generated folder: every image, its
  /// captions and split; PNG pixels exactly as rendered, JPEG pixels close to them.
  func testGeneratedFolderLoadsAndDecodes() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try ShapesDataset.generate(outputFolder: folder, count: 30, seed: 21, format: .mixed, log: { _ in })
    let dataset = try Dataset.load(data: folder)
    XCTAssertEqual(dataset.images.count, 30)
    XCTAssertEqual(dataset.scenesPath.map { URL(fileURLWithPath: $0).lastPathComponent }, "scenes.json")
    var extensions = Set<String>()
    for image in dataset.images {
      let item = ShapesDataset.item(index: image.id, seed: 21, imageSize: 64)
      XCTAssertEqual(image.captions, item.captions)
      let decoded = try ImageDecoder().decode(path: image.path)
      XCTAssertEqual(decoded.width, 64)
      XCTAssertEqual(decoded.height, 64)
      let fileExtension = URL(fileURLWithPath: image.path).pathExtension
      extensions.insert(fileExtension)
      if fileExtension == "png" {
        XCTAssertEqual(decoded, item.image)
      } else {
        XCTAssertEqual(fileExtension, "jpg")
        let error = zip(decoded.pixels, item.image.pixels).reduce(0) { $0 + abs(Int($1.0) - Int($1.1)) }
        XCTAssertLessThan(Double(error) / Double(decoded.pixels.count), 6, "JPEG far from the rendering")
      }
    }
    XCTAssertEqual(extensions, ["png", "jpg"])
    XCTAssertEqual(Set(dataset.images.map(\.split)), [.train, .val, .test])
  }

  // MARK: A render is complete or absent

  /// Stopped (as by Ctrl-C) or failing part-way, a render leaves neither the output folder nor its
  /// temporary folder; a temporary folder left by a killed render is removed by the next one.
  func testAStoppedOrFailedRenderLeavesNoOutput() throws {
    let out = temporaryFolder() + "/data"
    let temporary = ShapesDataset.temporaryFolder(for: out)
    var calls: [[Int]] = []
    let stopped = try ShapesDataset.generate(
      outputFolder: out, count: 2500, seed: 1, imageSize: 16, format: .png, log: { _ in },
      progress: { done, count in
        calls.append([done, count])
        caption_set_interrupt_requested(1)
      })
    caption_set_interrupt_requested(0)
    XCTAssertFalse(stopped)
    XCTAssertEqual(calls, [[1000, 2500]])
    XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    XCTAssertFalse(FileManager.default.fileExists(atPath: temporary))

    // A write fails after the first thousand images: a file stands where the images go.
    XCTAssertThrowsError(
      try ShapesDataset.generate(
        outputFolder: out, count: 2500, seed: 1, imageSize: 16, format: .png, log: { _ in },
        progress: { _, _ in
          try? FileManager.default.removeItem(atPath: temporary + "/images")
          FileManager.default.createFile(atPath: temporary + "/images", contents: Data([1]))
        })
    ) { XCTAssertEqual(($0 as? CaptionError)?.kind, .io, "\($0)") }
    XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    XCTAssertFalse(FileManager.default.fileExists(atPath: temporary))

    // What a killed render leaves: a temporary folder with some images.
    try FileManager.default.createDirectory(atPath: temporary + "/images", withIntermediateDirectories: true)
    FileManager.default.createFile(atPath: temporary + "/images/000007.png", contents: Data([1]))
    var lines: [String] = []
    calls = []
    XCTAssertTrue(
      try ShapesDataset.generate(
        outputFolder: out, count: 3, seed: 1, imageSize: 16, format: .png, log: { lines.append($0) },
        progress: { calls.append([$0, $1]) }))
    XCTAssertEqual(calls, [[3, 3]])
    XCTAssertTrue(lines.first?.contains("did not finish") ?? false, "\(lines)")
    XCTAssertFalse(FileManager.default.fileExists(atPath: temporary))
    XCTAssertEqual(
      try FileManager.default.contentsOfDirectory(atPath: out + "/images").sorted(),
      ["000000.png", "000001.png", "000002.png"])
  }

  /// An existing dataset is refused unless replacing is asked for, and a folder holding anything
  /// else is never replaced; an empty folder is simply filled.
  func testAnExistingDatasetIsReplacedOnlyWhenAsked() throws {
    let out = temporaryFolder() + "/data"
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)  // empty
    try ShapesDataset.generate(
      outputFolder: out, count: 3, seed: 1, imageSize: 16, format: .png, log: { _ in })
    XCTAssertThrowsError(
      try ShapesDataset.generate(
        outputFolder: out, count: 4, seed: 1, imageSize: 16, format: .png, log: { _ in })
    ) {
      XCTAssertEqual(($0 as? CaptionError)?.path, out)
      XCTAssertTrue(($0 as? CaptionError)?.reason.contains("--force") ?? false, "\($0)")
    }
    XCTAssertEqual(try Scenes.load(path: out + "/scenes.json").count, 3)
    try ShapesDataset.generate(
      outputFolder: out, count: 4, seed: 1, imageSize: 16, format: .png, replace: true, log: { _ in })
    XCTAssertEqual(try Scenes.load(path: out + "/scenes.json").count, 4)
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out + "/images").count, 4)
    let parent = (out as NSString).deletingLastPathComponent
    XCTAssertEqual(
      try FileManager.default.contentsOfDirectory(atPath: parent).filter { $0.hasPrefix(".") }, [],
      "nothing left beside the output")

    FileManager.default.createFile(atPath: out + "/notes.txt", contents: Data([1]))
    XCTAssertThrowsError(
      try ShapesDataset.generate(
        outputFolder: out, count: 2, seed: 1, imageSize: 16, format: .png, replace: true, log: { _ in })
    ) { XCTAssertTrue(($0 as? CaptionError)?.reason.contains("notes.txt") ?? false, "\($0)") }
    XCTAssertEqual(try Scenes.load(path: out + "/scenes.json").count, 4)
  }

  func testBadArgumentsAreErrors() {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let bad: [(Int, Int, Double, Double)] = [
      (0, 64, 0.1, 0.1), (10, 8, 0.1, 0.1), (10, 64, 0.6, 0.6), (10, 64, -0.1, 0),
    ]
    for (count, size, val, test) in bad {
      XCTAssertThrowsError(
        try ShapesDataset.generate(
          outputFolder: folder, count: count, seed: 1, imageSize: size, format: .png, valFraction: val,
          testFraction: test, log: { _ in })
      ) { error in
        XCTAssertEqual((error as? CaptionError)?.kind, .invalidArgument)
      }
    }
    // An output folder that cannot be made: a file is in the way.
    let blocked = folder + "/file"
    FileManager.default.createFile(atPath: blocked, contents: Data([1]))
    XCTAssertThrowsError(
      try ShapesDataset.generate(outputFolder: blocked, count: 2, seed: 1, format: .png, log: { _ in })
    ) { error in
      XCTAssertEqual((error as? CaptionError)?.kind, .io)
    }
  }
}

/// `caption dataset shapes` end to end: the built executable beside the test bundle.
final class ShapesCommandTests: XCTestCase {
  func testDatasetShapesCommand() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let out = folder + "/data"
    let run = try runCaption([
      "dataset", "shapes", "--out", out, "--count", "12", "--seed", "4", "--format", "jpg", "--image-size",
      "32",
    ])
    XCTAssertEqual(run.status, 0, run.stderr)
    // stderr is not a terminal: no progress line, only the summary.
    XCTAssertEqual(
      run.stderr, "wrote 12 images (10 train, 1 val, 1 test), captions.json and scenes.json to \(out)\n")
    XCTAssertEqual(try Scenes.load(path: out + "/scenes.json").count, 12)
    XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/images/000011.jpg"))

    for bad in [
      ["--count", "0"], ["--count", "5", "--format", "gif"],
      ["--count", "5", "--val", "0.7", "--test", "0.5"],
      ["--count", "5", "--image-size", "8"], ["--count", "5", "--seed", "x"],
      ["--count", "5", "--val", "nan"],
    ] {
      let usage = try runCaption(["dataset", "shapes", "--out", out, "--seed", "1"] + bad)
      XCTAssertEqual(usage.status, 64, "\(bad): \(usage.stderr)")
      XCTAssertTrue(usage.stderr.contains("Usage:"), usage.stderr)
    }

    FileManager.default.createFile(atPath: folder + "/file", contents: Data([1]))
    let blocked = try runCaption([
      "dataset", "shapes", "--out", folder + "/file/data", "--count", "2", "--seed", "1",
    ])
    XCTAssertEqual(blocked.status, 1)
    XCTAssertEqual(blocked.stderr, "caption: \(folder)/file: exists and is not a folder\n")

    // Rendering again over the dataset: refused without --force, replaced with it.
    let again = ["dataset", "shapes", "--out", out, "--count", "3", "--seed", "4", "--image-size", "16"]
    let refused = try runCaption(again)
    XCTAssertEqual(refused.status, 1)
    XCTAssertEqual(
      refused.stderr, "caption: \(out): already exists and is not empty (--force replaces a dataset)\n")
    XCTAssertEqual(try Scenes.load(path: out + "/scenes.json").count, 12)
    let forced = try runCaption(again + ["--force"])
    XCTAssertEqual(forced.status, 0, forced.stderr)
    XCTAssertEqual(try Scenes.load(path: out + "/scenes.json").count, 3)
  }
}
