import Foundation
import XCTest

@testable import CaptionKit

/// Decoding good files to SPEC §4's pixels, against references made independently
/// (pypng, Pillow) by scripts/make_image_fixtures.py.
final class ImageDecodeTests: XCTestCase {
  private struct Expected: Decodable {
    let width: Int
    let height: Int
    let fnv1a64: String
  }

  private func checksums() throws -> [String: Expected] {
    let data = try Data(contentsOf: URL(fileURLWithPath: fixturePath("image/png_checksums.json")))
    return try JSONDecoder().decode([String: Expected].self, from: data)
  }

  /// Every good PNG of the corpus (PngSuite, libpng's copy, libpng's test PNGs) and the made
  /// 16-bit ones: exact pixels, as pypng's raw samples under SPEC §4's rules.
  func testEveryGoodPNGDecodesToExactReferencePixels() throws {
    let table = try checksums()
    XCTAssertGreaterThan(table.count, 300)
    let pngsuite = try FileManager.default.contentsOfDirectory(atPath: try corpusFile("pngsuite"))
    let goodSuite = pngsuite.filter { $0.hasSuffix(".png") && !$0.hasPrefix("x") }
    XCTAssertEqual(goodSuite.count, 161)  // 160 test images and the logo
    for name in goodSuite { XCTAssertNotNil(table["pngsuite/" + name], "no reference for \(name)") }
    for (relative, expected) in table.sorted(by: { $0.key < $1.key }) {
      let path =
        relative.hasPrefix("made/")
        ? fixturePath("image/" + relative.dropFirst(5)) : try corpusFile(relative)
      let image = try ImageDecoder().decode(path: path)
      XCTAssertEqual(image.width, expected.width, relative)
      XCTAssertEqual(image.height, expected.height, relative)
      XCTAssertEqual(fnv1a64(image.pixels), expected.fnv1a64, "pixels of \(relative)")
    }
  }

  /// 16-bit samples become round(v·255/65535): every one of the 65536 values, computed here.
  func testSixteenBitScalingIsExactForEveryValue() throws {
    let image = try loadFixturePNG("gray16_all_values.png")
    XCTAssertEqual(image.width, 256)
    XCTAssertEqual(image.height, 256)
    for v in 0..<65536 {
      let expected = UInt8((v * 255 + 32767) / 65535)  // exact round half up; halves cannot occur
      for c in 0..<3 where image.pixels[3 * v + c] != expected {
        XCTFail("16-bit value \(v): got \(image.pixels[3 * v + c]), want \(expected)")
        return
      }
    }
  }

  func testCorruptPngSuiteFilesAreRejected() throws {
    let folder = try corpusFile("pngsuite")
    let corrupt = try FileManager.default.contentsOfDirectory(atPath: folder).filter {
      $0.hasPrefix("x") && $0.hasSuffix(".png")
    }
    XCTAssertEqual(corrupt.count, 14)
    for name in corrupt {
      let path = folder + "/" + name
      XCTAssertThrowsError(try ImageDecoder().decode(path: path), name) { error in
        guard let error = error as? CaptionError else { return XCTFail("\(name): \(error)") }
        XCTAssertEqual(error.path, path)
        XCTAssertTrue([.corrupt, .truncated, .unsupportedFormat].contains(error.kind), "\(name): \(error)")
        XCTAssertFalse(error.description.contains("\n"))
      }
    }
  }

  /// The corpus JPEGs (baseline, progressive, arithmetic, grayscale, odd size, quality 100)
  /// within ±2 per channel of Pillow's decode.
  func testCorpusJPEGsMatchPillowWithinTwo() throws {
    for name in [
      "testorig", "testimgint", "testimgari", "testimgp", "testimggray", "testimgcrop", "testimgfst100",
    ] {
      let image = try ImageDecoder().decode(path: try corpusFile("jpeg/\(name).jpg"))
      let reference = try loadFixturePNG("jpeg_ref_\(name).png")
      XCTAssertEqual(image.width, reference.width, name)
      XCTAssertEqual(image.height, reference.height, name)
      guard image.width == reference.width, image.height == reference.height else { continue }
      XCTAssertLessThanOrEqual(differences(image, reference).max, 2, name)
    }
  }

  /// Made JPEGs: 4:4:4, 4:2:2, 4:2:0 chroma on odd sizes, restart markers, progressive.
  func testChromaSubsamplingsRestartsAndProgressiveMatchPillow() throws {
    for name in ["jpeg_444", "jpeg_422", "jpeg_420", "jpeg_restart", "jpeg_progressive"] {
      let image = try ImageDecoder().decode(path: fixturePath("image/\(name).jpg"))
      let reference = try loadFixturePNG("\(name)_ref.png")
      XCTAssertEqual([image.width, image.height], [61, 45], name)
      guard image.width == reference.width, image.height == reference.height else { continue }
      XCTAssertLessThanOrEqual(differences(image, reference).max, 2, name)
    }
  }

  /// SPEC §4's reduced DCT scale: the smallest k/8 whose shorter side is still ≥ the minimum.
  func testReducedDCTScaleMatchesPillowDraft() throws {
    let path = try corpusFile("jpeg/testorig.jpg")  // 227×149
    // k = 1 gives 29×19, k = 2 gives 57×38, k = 3 gives 86×56.
    let eighth = try ImageDecoder().decode(path: path, minimumShorterSide: 19)
    XCTAssertEqual([eighth.width, eighth.height], [29, 19])
    XCTAssertLessThanOrEqual(differences(eighth, try loadFixturePNG("jpeg_ref_testorig_scale8.png")).max, 2)
    let quarter = try ImageDecoder().decode(path: path, minimumShorterSide: 38)
    XCTAssertEqual([quarter.width, quarter.height], [57, 38])
    XCTAssertLessThanOrEqual(differences(quarter, try loadFixturePNG("jpeg_ref_testorig_scale4.png")).max, 2)
    let threeEighths = try ImageDecoder().decode(path: path, minimumShorterSide: 39)
    XCTAssertEqual([threeEighths.width, threeEighths.height], [86, 56])
    let full = try ImageDecoder().decode(path: path, minimumShorterSide: 150)  // none reaches 150
    XCTAssertEqual([full.width, full.height], [227, 149])
    XCTAssertEqual(try ImageDecoder().decode(path: path), full)
  }

  func testTwelveBitJPEGIsAClearError() throws {
    for name in ["testorig12.jpg", "monkey12.jpg"] {
      let path = try corpusFile("jpeg/" + name)
      XCTAssertThrowsError(try ImageDecoder().decode(path: path)) { error in
        let error = error as? CaptionError
        XCTAssertEqual(error?.kind, .unsupportedFormat)
        XCTAssertEqual(error?.path, path)
        XCTAssertTrue(error?.reason.contains("precision 12") ?? false, "\(String(describing: error))")
      }
    }
  }

  /// Adobe-inverted CMYK and YCCK: R = round(C·K/255) on the values libjpeg returns.
  func testCMYKAndYCCKJPEGsConvertAdobeInverted() throws {
    for name in ["cmyk", "ycck"] {
      let image = try ImageDecoder().decode(path: fixturePath("image/\(name).jpg"))
      let reference = try loadFixturePNG("\(name)_ref.png")
      XCTAssertEqual([image.width, image.height], [56, 40], name)
      XCTAssertLessThanOrEqual(differences(image, reference).max, 2, name)
    }
  }

  /// Little-endian EXIF, all 8 orientations, against Pillow's exif_transpose.
  func testLittleEndianExifOrientationsMatchPillow() throws {
    for orientation in 1...8 {
      let image = try ImageDecoder().decode(path: fixturePath("image/exif_le_\(orientation).jpg"))
      let reference = try loadFixturePNG("exif_le_\(orientation)_ref.png")
      let expectedSize = orientation >= 5 ? [32, 48] : [48, 32]
      XCTAssertEqual([image.width, image.height], expectedSize, "orientation \(orientation)")
      XCTAssertEqual([reference.width, reference.height], expectedSize, "reference \(orientation)")
      guard [image.width, image.height] == expectedSize else { continue }
      XCTAssertLessThanOrEqual(differences(image, reference).max, 2, "orientation \(orientation)")
    }
  }

  /// The big-endian EXIF photos: each upright, 1800×1200 or 1200×1800, the rotated one (orientation 6)
  /// showing the same picture as orientation 1 (compared at the 1/8 DCT scale to keep the test fast).
  /// Two orientations are enough here: the made exif_le_* files check all eight against Pillow, and
  /// testInvalidExifIsIgnored reads all eight in both byte orders.
  func testExifSamplesComeOutUpright() throws {
    for kind in ["Landscape", "Portrait"] {
      let size = kind == "Landscape" ? [1800, 1200] : [1200, 1800]
      let upright = try ImageDecoder().decode(
        path: try corpusFile("exif/\(kind)_1.jpg"), minimumShorterSide: 150)
      XCTAssertEqual([upright.width, upright.height], size.map { $0 / 8 })
      // The test can fail: a mirrored picture is far from the upright one.
      let mirrored = ExifOrientation.apply(2, to: upright)
      XCTAssertGreaterThan(differences(mirrored, upright).mean, 15)
      for index in [1, 6] {
        let path = try corpusFile("exif/\(kind)_\(index).jpg")
        let small = try ImageDecoder().decode(path: path, minimumShorterSide: 150)
        XCTAssertEqual([small.width, small.height], size.map { $0 / 8 }, path)
        guard small.width == upright.width, small.height == upright.height else { continue }
        XCTAssertLessThan(differences(small, upright).mean, 4, path)
      }
      let full = try ImageDecoder().decode(path: try corpusFile("exif/\(kind)_6.jpg"))
      XCTAssertEqual([full.width, full.height], size)
    }
  }

  /// Broken EXIF blocks (both byte orders) are ignored: the picture stays as stored.
  func testInvalidExifIsIgnored() throws {
    let plain = RGBImage(width: 24, height: 16, pixels: (0..<(24 * 16 * 3)).map { UInt8($0 * 7 % 251) })
    let jpeg = try JPEGWriter.encode(plain, quality: 95)
    let stored = try ImageDecoder().decode(bytes: jpeg, path: "plain.jpg")
    func withExif(_ tiff: [UInt8]) -> [UInt8] {
      let payload = Array("Exif".utf8) + [0, 0] + tiff
      let length = payload.count + 2
      return [0xFF, 0xD8, 0xFF, 0xE1, UInt8(length >> 8), UInt8(length & 0xFF)] + payload + jpeg.dropFirst(2)
    }
    func entry(littleEndian: Bool, type: UInt16, count: UInt32, value: UInt16) -> [UInt8] {
      let header: [UInt8] = littleEndian ? [0x49, 0x49, 42, 0, 8, 0, 0, 0] : [0x4D, 0x4D, 0, 42, 0, 0, 0, 8]
      func u16(_ v: UInt16) -> [UInt8] {
        littleEndian ? [UInt8(v & 0xFF), UInt8(v >> 8)] : [UInt8(v >> 8), UInt8(v & 0xFF)]
      }
      func u32(_ v: UInt32) -> [UInt8] { littleEndian ? bigEndian32(v).reversed() : bigEndian32(v) }
      return header + u16(1) + u16(0x0112) + u16(type) + u32(count) + u16(value) + [0, 0] + u32(0)
    }
    for littleEndian in [true, false] {
      // Sanity: every valid orientation is read and applied (so the cases below can fail).
      for value: UInt16 in 1...8 {
        let oriented = try ImageDecoder().decode(
          bytes: withExif(entry(littleEndian: littleEndian, type: 3, count: 1, value: value)), path: "r.jpg")
        XCTAssertEqual(
          oriented, ExifOrientation.apply(Int(value), to: stored),
          "orientation \(value), little-endian \(littleEndian)")
        if value > 1 { XCTAssertNotEqual(oriented, stored, "orientation \(value)") }
      }
      let broken: [[UInt8]] = [
        entry(littleEndian: littleEndian, type: 3, count: 1, value: 9),  // out of range
        entry(littleEndian: littleEndian, type: 3, count: 1, value: 0),
        entry(littleEndian: littleEndian, type: 4, count: 1, value: 3),  // wrong type
        entry(littleEndian: littleEndian, type: 3, count: 2, value: 3),  // wrong count
        Array(entry(littleEndian: littleEndian, type: 3, count: 1, value: 3).prefix(14)),  // cut short
        [0x49, 0x4D, 42, 0, 8, 0, 0, 0],  // mixed byte order mark
        // IFD0 offset beyond the end
        littleEndian ? [0x49, 0x49, 42, 0, 0xFF, 0xFF, 0, 0] : [0x4D, 0x4D, 0, 42, 0x7F, 0xFF, 0xFF, 0xFF],
        [],
      ]
      for (index, tiff) in broken.enumerated() {
        let image = try ImageDecoder().decode(bytes: withExif(tiff), path: "broken\(index).jpg")
        XCTAssertEqual(image, stored, "broken EXIF case \(index), little-endian \(littleEndian)")
      }
    }
  }

  /// Decoders share no state: concurrent decodes (as a data loader's threads do) give the serial result.
  func testConcurrentDecodesMatchSerialOnes() throws {
    let paths =
      try ["jpeg/testorig.jpg", "jpeg/testimgp.jpg", "pngsuite/basi6a16.png", "pngsuite/basn3p04.png"]
      .map { try corpusFile($0) } + [fixturePath("image/cmyk.jpg"), fixturePath("image/exif_le_6.jpg")]
    let serial = try paths.map { try ImageDecoder().decode(path: $0) }
    final class Results: @unchecked Sendable {
      let lock = NSLock()
      var images: [Int: RGBImage] = [:]
    }
    let results = Results()
    DispatchQueue.concurrentPerform(iterations: 4 * paths.count) { index in
      let image = try? ImageDecoder().decode(path: paths[index % paths.count])
      results.lock.lock()
      results.images[index] = image
      results.lock.unlock()
    }
    for index in 0..<(4 * paths.count) {
      XCTAssertEqual(results.images[index], serial[index % paths.count], paths[index % paths.count])
    }
  }

  /// Orientation mapping on a 3×2 image, by hand.
  func testOrientationMappingsByHand() {
    // Pixels a b c / d e f (gray values 1...6).
    let image = RGBImage(width: 3, height: 2, pixels: [1, 2, 3, 4, 5, 6].flatMap { [$0, $0, $0] })
    let expected: [Int: (Int, Int, [UInt8])] = [
      1: (3, 2, [1, 2, 3, 4, 5, 6]),
      2: (3, 2, [3, 2, 1, 6, 5, 4]),
      3: (3, 2, [6, 5, 4, 3, 2, 1]),
      4: (3, 2, [4, 5, 6, 1, 2, 3]),
      5: (2, 3, [1, 4, 2, 5, 3, 6]),
      6: (2, 3, [4, 1, 5, 2, 6, 3]),
      7: (2, 3, [6, 3, 5, 2, 4, 1]),
      8: (2, 3, [3, 6, 2, 5, 1, 4]),
    ]
    for (orientation, (width, height, gray)) in expected {
      let turned = ExifOrientation.apply(orientation, to: image)
      XCTAssertEqual([turned.width, turned.height], [width, height], "orientation \(orientation)")
      XCTAssertEqual(turned.pixels, gray.flatMap { [$0, $0, $0] }, "orientation \(orientation)")
    }
  }
}
