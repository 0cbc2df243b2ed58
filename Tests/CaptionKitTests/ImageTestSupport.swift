import Foundation
import XCTest

@testable import CaptionKit

/// FNV-1a 64 of bytes, as hex (the hash scripts/make_image_fixtures.py stores).
func fnv1a64(_ bytes: [UInt8]) -> String {
  var hash: UInt64 = 0xCBF2_9CE4_8422_2325
  for byte in bytes {
    hash ^= UInt64(byte)
    hash = hash &* 0x0000_0100_0000_01B3
  }
  let digits = String(hash, radix: 16)
  return String(repeating: "0", count: 16 - digits.count) + digits
}

/// CRC-32 (PNG's, ISO 3309) for building test PNG chunks.
func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
  var crc: UInt32 = 0xFFFF_FFFF
  for byte in bytes {
    crc ^= UInt32(byte)
    for _ in 0..<8 { crc = (crc >> 1) ^ (crc & 1 == 1 ? 0xEDB8_8320 : 0) }
  }
  return ~crc
}

func bigEndian32(_ value: UInt32) -> [UInt8] {
  [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
}

/// A PNG chunk: length, type, data, CRC over type and data.
func pngChunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
  let typeAndData = Array(type.utf8) + data
  return bigEndian32(UInt32(data.count)) + typeAndData + bigEndian32(crc32(typeAndData[...]))
}

/// Recomputes every chunk CRC of a (possibly mutated) PNG, as far as its chunk structure holds,
/// so a mutation reaches libpng's zlib and filter code instead of stopping at the CRC check.
func fixingPNGCRCs(_ bytes: [UInt8]) -> [UInt8] {
  var fixed = bytes
  var at = 8
  while at + 12 <= fixed.count {
    let length =
      Int(fixed[at]) << 24 | Int(fixed[at + 1]) << 16 | Int(fixed[at + 2]) << 8 | Int(fixed[at + 3])
    let end = at + 8 + length
    guard end + 4 <= fixed.count else { break }
    let crc = bigEndian32(crc32(fixed[(at + 4)..<end]))
    fixed.replaceSubrange(end..<(end + 4), with: crc)
    at = end + 4
  }
  return fixed
}

func readBytes(_ path: String) throws -> [UInt8] {
  [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// A committed PNG fixture decoded by our own decoder (checked against pypng's samples elsewhere).
func loadFixturePNG(_ name: String) throws -> RGBImage {
  try ImageDecoder().decode(path: fixturePath("image/" + name))
}

/// Per-channel differences between two images of one size: the largest and the mean.
func differences(_ a: RGBImage, _ b: RGBImage) -> (max: Int, mean: Double) {
  precondition(a.width == b.width && a.height == b.height)
  var largest = 0
  var total = 0
  for i in 0..<a.pixels.count {
    let d = abs(Int(a.pixels[i]) - Int(b.pixels[i]))
    largest = max(largest, d)
    total += d
  }
  return (largest, Double(total) / Double(max(a.pixels.count, 1)))
}

/// Asserts that decoding fails with a CaptionError of `kind` that names `path`.
func assertDecodeFails(
  _ bytes: [UInt8], kind: CaptionError.Kind, path: String = "test.bin",
  decoder: ImageDecoder = ImageDecoder(),
  _ message: String = "", file: StaticString = #filePath, line: UInt = #line
) {
  do {
    let image = try decoder.decode(bytes: bytes, path: path)
    XCTFail("\(message): decoded \(image.width)x\(image.height) instead of failing", file: file, line: line)
  } catch let error as CaptionError {
    XCTAssertEqual(error.kind, kind, "\(message): \(error)", file: file, line: line)
    XCTAssertEqual(error.path, path, file: file, line: line)
    XCTAssertFalse(error.reason.isEmpty, file: file, line: line)
  } catch {
    XCTFail("\(message): unexpected error type \(error)", file: file, line: line)
  }
}
