import Foundation
import XCTest

@testable import CaptionKit

/// Bad input: every failure a CaptionError of the right kind naming the file; never a crash,
/// hang or big allocation.
final class ImageMalformedTests: XCTestCase {
  func testTruncatedJPEGsAreRejected() throws {
    for name in ["testorig.jpg", "testimgp.jpg", "testimgari.jpg"] {
      let bytes = try readBytes(try corpusFile("jpeg/" + name))
      for cut in [2, 3, 20, 200, 700, bytes.count / 2, bytes.count - 100, bytes.count - 2, bytes.count - 1] {
        assertDecodeFails(Array(bytes.prefix(cut)), kind: .truncated, path: name, "\(name) cut at \(cut)")
      }
    }
  }

  /// libjpeg's data-loss warnings are errors (SPEC §4); its other warnings are not.
  func testJPEGWarningsThatLoseDataAreErrors() throws {
    // A restart marker out of sequence: JWRN_MUST_RESYNC.
    var restart = try readBytes(fixturePath("image/jpeg_restart.jpg"))
    let sos = try XCTUnwrap((0..<restart.count - 1).first { restart[$0] == 0xFF && restart[$0 + 1] == 0xDA })
    let rst = try XCTUnwrap(
      (sos..<restart.count - 1).first { restart[$0] == 0xFF && (0xD0...0xD7).contains(restart[$0 + 1]) })
    XCTAssertNoThrow(try ImageDecoder().decode(bytes: restart, path: "restart.jpg"))
    restart[rst + 1] = 0xD0 + (restart[rst + 1] - 0xD0 + 3) % 8
    assertDecodeFails(restart, kind: .corrupt, path: "restart.jpg", "RST out of sequence")
    // A marker in the middle of the entropy-coded data: JWRN_HIT_MARKER.
    var cut = try readBytes(try corpusFile("jpeg/testorig.jpg"))
    let scan = try XCTUnwrap((0..<cut.count - 1).first { cut[$0] == 0xFF && cut[$0 + 1] == 0xDA })
    let middle = (scan + cut.count) / 2
    cut[middle] = 0xFF
    cut[middle + 1] = 0xD9
    assertDecodeFails(cut, kind: .corrupt, path: "cut.jpg", "EOI inside the scan")
    // Extraneous bytes before a header marker (JWRN_EXTRANEOUS_DATA) are harmless.
    let original = try readBytes(try corpusFile("jpeg/testorig.jpg"))
    let dqt = try XCTUnwrap(
      (2..<original.count - 1).first { original[$0] == 0xFF && original[$0 + 1] == 0xDB })
    var padded = original
    padded.insert(contentsOf: [0x00, 0x12, 0x34], at: dqt)
    XCTAssertEqual(
      try ImageDecoder().decode(bytes: padded, path: "padded.jpg"),
      try ImageDecoder().decode(bytes: original, path: "o"))
  }

  func testTruncatedPNGsAreRejected() throws {
    for name in ["basn2c08.png", "basi6a16.png", "basn3p04.png"] {
      let bytes = try readBytes(try corpusFile("pngsuite/" + name))
      for cut in [1, 4, 8, 20, 33, 60, bytes.count / 2, bytes.count - 12, bytes.count - 1] {
        assertDecodeFails(Array(bytes.prefix(cut)), kind: .truncated, path: name, "\(name) cut at \(cut)")
      }
    }
  }

  func testEmptyRandomAndTextInputs() throws {
    assertDecodeFails([], kind: .truncated, "zero length")
    var generator = SeededGenerator(seed: 99)
    for trial in 0..<20 {
      var noise = (0..<Int.random(in: 1...4000, using: &generator)).map { _ in
        UInt8.random(in: 0...255, using: &generator)
      }
      if noise.first == 0xFF || noise.first == 0x89 { noise[0] = 0 }
      assertDecodeFails(noise, kind: .unsupportedFormat, "random bytes \(trial)")
    }
    // JPEG and PNG signatures followed by noise: corrupt or truncated, never decoded.
    for signature in [[0xFF, 0xD8, 0xFF] as [UInt8], [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]] {
      for trial in 0..<20 {
        let noise =
          signature
          + (0..<Int.random(in: 0...3000, using: &generator)).map { _ in
            UInt8.random(in: 0...255, using: &generator)
          }
        XCTAssertThrowsError(try ImageDecoder().decode(bytes: noise, path: "noise"), "trial \(trial)") {
          error in
          XCTAssertTrue(
            [.corrupt, .truncated, .unsupportedFormat].contains((error as? CaptionError)?.kind), "\(error)")
        }
      }
    }
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let text = folder + "/notes.jpg"
    try Data("this is a caption, not a photo\n".utf8).write(to: URL(fileURLWithPath: text))
    XCTAssertThrowsError(try ImageDecoder().decode(path: text)) { error in
      XCTAssertEqual((error as? CaptionError)?.kind, .unsupportedFormat)
      XCTAssertEqual((error as? CaptionError)?.path, text)
    }
    let empty = folder + "/empty.png"
    XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
    XCTAssertThrowsError(try ImageDecoder().decode(path: empty)) {
      XCTAssertEqual(($0 as? CaptionError)?.kind, .truncated)
    }
    XCTAssertThrowsError(try ImageDecoder().decode(path: folder)) { error in
      XCTAssertEqual((error as? CaptionError)?.kind, .notAFile)
      XCTAssertEqual((error as? CaptionError)?.path, folder)
    }
    XCTAssertThrowsError(try ImageDecoder().decode(path: folder + "/missing.jpg")) {
      XCTAssertEqual(($0 as? CaptionError)?.kind, .unreadable)
    }
    XCTAssertThrowsError(try ImageDecoder().decode(path: "/dev/zero")) {
      XCTAssertEqual(($0 as? CaptionError)?.kind, .notAFile)
    }
  }

  /// Decompression bombs: headers claiming a billion pixels are refused from the header.
  func testHeadersBeyondThePixelBudgetAreRefused() throws {
    // PNG: a valid IHDR for 40000×25000 (10⁹ pixels) and a tiny IDAT.
    var ihdr = bigEndian32(40000) + bigEndian32(25000)
    ihdr += [8, 2, 0, 0, 0]
    let bomb =
      [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + pngChunk("IHDR", ihdr)
      + pngChunk("IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]) + pngChunk("IEND", [])
    assertDecodeFails(bomb, kind: .tooLarge, "PNG bomb")
    assertDecodeFails(Array(bomb.prefix(33)), kind: .tooLarge, "PNG bomb header only")
    // JPEG: testorig.jpg with its frame header patched to 40000×25000.
    var jpeg = try readBytes(try corpusFile("jpeg/testorig.jpg"))
    guard let sof = (0..<(jpeg.count - 9)).first(where: { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 }) else {
      return XCTFail("no SOF0 in testorig.jpg")
    }
    jpeg[sof + 5] = UInt8(25000 >> 8)
    jpeg[sof + 6] = UInt8(25000 & 0xFF)
    jpeg[sof + 7] = UInt8(40000 >> 8)
    jpeg[sof + 8] = UInt8(40000 & 0xFF)
    assertDecodeFails(jpeg, kind: .tooLarge, "JPEG bomb")
    // The budget is configurable: the 227×149 original is refused under 30,000 pixels.
    let original = try readBytes(try corpusFile("jpeg/testorig.jpg"))
    assertDecodeFails(original, kind: .tooLarge, decoder: ImageDecoder(maxPixels: 30_000), "small budget")
    XCTAssertNoThrow(try ImageDecoder(maxPixels: 227 * 149).decode(bytes: original, path: "exact budget"))
    let png = try readBytes(try corpusFile("pngsuite/basn2c08.png"))  // 32×32
    assertDecodeFails(png, kind: .tooLarge, decoder: ImageDecoder(maxPixels: 1023), "PNG budget")
  }

  /// libpng's crashers: no big allocation (libpng's peak, counted, stays under 1 MiB though the
  /// huge_* files claim chunks of up to 2 GiB); the truncated huge_* files and badcrc.png refused.
  func testLibpngCrashersAndBadPalettes() throws {
    let crashers = try corpusFile("libpng/testpngs/crashers")
    let names = try FileManager.default.contentsOfDirectory(atPath: crashers).sorted()
    XCTAssertGreaterThan(names.count, 20)
    var peaks: [String: Int] = [:]
    for name in names {
      let peak = ImageDecoder.pngLibraryPeakBytes(try readBytes(crashers + "/" + name))
      peaks[name] = peak
      XCTAssertGreaterThan(peak, 0, name)
      XCTAssertLessThan(peak, 1 << 20, name)
      let result = Result { try ImageDecoder().decode(path: crashers + "/" + name) }
      if name.hasPrefix("huge_") || name == "badcrc.png" {
        XCTAssertThrowsError(try result.get(), name)
      }
      if case .failure(let error) = result { XCTAssertTrue(error is CaptionError, "\(name): \(error)") }
    }
    print("libpng's peak allocation on its crashers: \(peaks.values.max() ?? 0) bytes at most")
    // The count sees libpng's buffers: a valid 100 000×1 image needs rows of 300 000 bytes.
    let wide = try PNGWriter.encode(
      RGBImage(width: 100_000, height: 1, pixels: [UInt8](repeating: 7, count: 300_000)))
    XCTAssertGreaterThan(ImageDecoder.pngLibraryPeakBytes(wide), 300_000)
    let badpal = try corpusFile("libpng/testpngs/badpal")
    for name in try FileManager.default.contentsOfDirectory(atPath: badpal) {
      if case .failure(let error) = Result(catching: { try ImageDecoder().decode(path: badpal + "/" + name) })
      {
        XCTAssertTrue(error is CaptionError, "\(name): \(error)")
      }
    }
  }

  /// A few thousand seeded corruptions of real files: each decodes or throws a CaptionError.
  func testSeededMutationsNeverCrash() throws {
    let sources: [(String, [UInt8])] = try [
      ("testorig.jpg", readBytes(try corpusFile("jpeg/testorig.jpg"))),
      ("testimgp.jpg", readBytes(try corpusFile("jpeg/testimgp.jpg"))),
      ("testimgari.jpg", readBytes(try corpusFile("jpeg/testimgari.jpg"))),
      ("cmyk.jpg", readBytes(fixturePath("image/cmyk.jpg"))),
      ("exif_le_6.jpg", readBytes(fixturePath("image/exif_le_6.jpg"))),
      ("basn2c08.png", readBytes(try corpusFile("pngsuite/basn2c08.png"))),
      ("basi6a16.png", readBytes(try corpusFile("pngsuite/basi6a16.png"))),
      ("basn3p04.png", readBytes(try corpusFile("pngsuite/basn3p04.png"))),
      ("basi0g01.png", readBytes(try corpusFile("pngsuite/basi0g01.png"))),
    ]
    var generator = SeededGenerator(seed: 2024)
    let decoder = ImageDecoder(maxPixels: 2_000_000)
    var decoded = 0, rejected = 0
    for round in 0..<3000 {
      let (name, original) = sources[round % sources.count]
      var bytes = original
      switch Int.random(in: 0..<5, using: &generator) {
      case 0:  // flip a few bytes
        for _ in 0..<Int.random(in: 1...8, using: &generator) {
          bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(
            in: 0...255, using: &generator)
        }
      case 1:  // cut anywhere
        bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &generator)))
      case 2:  // insert or delete a run
        let at = Int.random(in: 0..<bytes.count, using: &generator)
        if Bool.random(using: &generator) {
          bytes.insert(
            contentsOf: (0..<Int.random(in: 1...64, using: &generator)).map { _ in
              UInt8.random(in: 0...255, using: &generator)
            }, at: at)
        } else {
          bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...64, using: &generator)))
        }
      case 3:  // set bytes to marker-like values
        for _ in 0..<Int.random(in: 1...4, using: &generator) {
          bytes[Int.random(in: 0..<bytes.count, using: &generator)] =
            [0x00, 0xFF, 0x7F, 0x80][Int.random(in: 0..<4, using: &generator)]
        }
      default:  // header bytes (sizes, tables) with valid PNG CRCs, to reach the inner decoders
        for _ in 0..<Int.random(in: 1...3, using: &generator) {
          bytes[Int.random(in: 0..<min(bytes.count, 700), using: &generator)] = UInt8.random(
            in: 0...255, using: &generator)
        }
        if name.hasSuffix(".png") { bytes = fixingPNGCRCs(bytes) }
      }
      do {
        let image = try decoder.decode(bytes: bytes, path: name)
        XCTAssertEqual(image.pixels.count, image.width * image.height * 3)
        XCTAssertLessThanOrEqual(image.width * image.height, 2_000_000)
        decoded += 1
      } catch let error as CaptionError {
        XCTAssertEqual(error.path, name)
        rejected += 1
      }
    }
    // Both outcomes occur, so the mutations reach past the signature checks.
    XCTAssertGreaterThan(decoded, 100)
    XCTAssertGreaterThan(rejected, 1000)
  }
}
