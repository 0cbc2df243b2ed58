import Foundation
import XCTest

@testable import CaptionKit

/// SPEC §4 steps 1–4 against hand-computed cases and an independent floating-point reference.
final class ImagePreprocessTests: XCTestCase {
  /// A one-row or one-column gray image.
  private func grayLine(_ values: [UInt8], vertical: Bool = false) -> RGBImage {
    RGBImage(
      width: vertical ? 1 : values.count, height: vertical ? values.count : 1,
      pixels: values.flatMap { [$0, $0, $0] })
  }

  private func grays(_ image: RGBImage) -> [UInt8] {
    stride(from: 0, to: image.pixels.count, by: 3).map { image.pixels[$0] }
  }

  func testShrinkingAveragesCoveredArea() {
    // 4 → 2: pairs. (41 + 30)/2 = 35.5 rounds half up to 36.
    XCTAssertEqual(grays(Preprocess.resize(grayLine([10, 20, 30, 41]), width: 2, height: 1)), [15, 36])
    // 3 → 2: output 0 covers input 0 and half of 1: (10 + 0.5·20) / 1.5 = 13.33; (0.5·20 + 40)/1.5 = 33.33.
    XCTAssertEqual(grays(Preprocess.resize(grayLine([10, 20, 40]), width: 2, height: 1)), [13, 33])
    // 2 → 1: 0.5 rounds up.
    XCTAssertEqual(grays(Preprocess.resize(grayLine([0, 1]), width: 1, height: 1)), [1])
    // 5 → 2 vertically: (1·0 + 1·50 + 0.5·100)/2.5 = 40, (0.5·100 + 1·150 + 1·255)/2.5 = 182.
    XCTAssertEqual(
      grays(Preprocess.resize(grayLine([0, 50, 100, 150, 255], vertical: true), width: 1, height: 2)),
      [40, 182])
  }

  func testEnlargingIsBilinearWithHalfIntegerCentres() {
    // 2 → 4: sample points −0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    XCTAssertEqual(grays(Preprocess.resize(grayLine([0, 100]), width: 4, height: 1)), [0, 25, 75, 100])
    // 0.25·2 = 0.5 → 1 and 0.75·2 = 1.5 → 2 (round half up).
    XCTAssertEqual(grays(Preprocess.resize(grayLine([0, 2]), width: 4, height: 1)), [0, 1, 2, 2])
    // 2 → 3: −1/6 (clamped), 0.5, 7/6 (clamped): 10, 15.5 → 16, 21.
    XCTAssertEqual(
      grays(Preprocess.resize(grayLine([10, 21], vertical: true), width: 1, height: 3)), [10, 16, 21])
  }

  func testScaledSizeRoundsTheLongerSideHalfUp() {
    XCTAssertTrue(Preprocess.scaledSize(width: 5, height: 2, size: 3) == (8, 3))  // 7.5 + 0.5
    XCTAssertTrue(Preprocess.scaledSize(width: 4, height: 5, size: 2) == (2, 3))  // 2.5 → 3
    XCTAssertTrue(Preprocess.scaledSize(width: 7, height: 4, size: 2) == (4, 2))  // 3.5 → 4
    XCTAssertTrue(Preprocess.scaledSize(width: 9, height: 7, size: 2) == (3, 2))  // 2.57 → 3
    XCTAssertTrue(Preprocess.scaledSize(width: 1024, height: 768, size: 64) == (85, 64))  // 85.33
  }

  func testResizeAndCropByHand() {
    // 6×4 to S = 2: 3×2 (2×2 block means), crop x at floor((3 − 2)/2) = 0: the first two blocks.
    var pixels: [UInt8] = []
    for y in 0..<4 { for x in 0..<6 { pixels += [UInt8(10 * x + y), UInt8(100 + x), UInt8(200 - 3 * y)] } }
    let image = RGBImage(width: 6, height: 4, pixels: pixels)
    let seen = Preprocess.resizeAndCrop(image, size: 2)
    XCTAssertEqual([seen.width, seen.height], [2, 2])
    // Block (bx, by): red mean = 10·(2bx + 0.5) + (2by + 0.5), green 100 + 2bx + 0.5, blue 200 − 3·(2by + 0.5).
    XCTAssertEqual(
      seen.pixels,
      [
        6, 101, 199, /**/ 26, 103, 199,  // red 5.5 → 6, 25.5 → 26; green 100.5 → 101; blue 198.5 → 199
        8, 101, 193, /**/ 28, 103, 193,
      ])
    // 2×7 to S = 2: no resampling, crop y at floor((7 − 2)/2) = 2.
    let tall = RGBImage(width: 2, height: 7, pixels: (0..<42).map { UInt8($0) })
    XCTAssertEqual(Preprocess.resizeAndCrop(tall, size: 2).pixels, Array(12..<24).map { UInt8($0) })
    // 7×2 to S = 2: crop x at 2.
    let wide = RGBImage(width: 7, height: 2, pixels: (0..<42).map { UInt8($0) })
    XCTAssertEqual(
      Preprocess.resizeAndCrop(wide, size: 2).pixels,
      Array(6..<12).map { UInt8($0) } + Array(27..<33).map { UInt8($0) })
  }

  func testSquareImageOfTheSizePassesUnchanged() {
    var generator = SeededGenerator(seed: 3)
    let image = RGBImage(
      width: 5, height: 5, pixels: (0..<75).map { _ in UInt8.random(in: 0...255, using: &generator) })
    XCTAssertEqual(Preprocess.resizeAndCrop(image, size: 5), image)
  }

  /// Against a direct floating-point reading of SPEC §4 (coverage integrals, bilinear sampling):
  /// every value equal, except where the exact value lies within 1e-6 of a half.
  func testMatchesFloatingPointReferenceOnRandomImages() {
    var generator = SeededGenerator(seed: 11)
    func weights(_ n: Int, _ m: Int) -> [[(Int, Double)]] {
      (0..<m).map { j in
        if m < n {
          let low = Double(j) * Double(n) / Double(m), high = Double(j + 1) * Double(n) / Double(m)
          return (0..<n).compactMap { i in
            let overlap = min(Double(i + 1), high) - max(Double(i), low)
            return overlap > 0 ? (i, overlap / (high - low)) : nil
          }
        } else if m > n {
          let x = min(max((Double(j) + 0.5) * Double(n) / Double(m) - 0.5, 0), Double(n - 1))
          let i0 = Int(x.rounded(.down)), f = x - Double(i0)
          return i0 + 1 < n ? [(i0, 1 - f), (i0 + 1, f)] : [(i0, 1)]
        } else {
          return [(j, 1)]
        }
      }
    }
    for trial in 0..<40 {
      let width = Int.random(in: 1...23, using: &generator),
        height = Int.random(in: 1...23, using: &generator)
      let size = Int.random(in: 1...12, using: &generator)
      let image = RGBImage(
        width: width, height: height,
        pixels: (0..<(width * height * 3)).map { _ in UInt8.random(in: 0...255, using: &generator) })
      let seen = Preprocess.resizeAndCrop(image, size: size)
      XCTAssertEqual([seen.width, seen.height], [size, size])
      if width == size && height == size { continue }
      let shorter = Double(min(width, height)), longer = Double(max(width, height))
      let scaledLonger = Int((longer * Double(size) / shorter + 0.5).rounded(.down))
      let (sw, sh) = width <= height ? (size, scaledLonger) : (scaledLonger, size)
      let cropX = (sw - size) / 2, cropY = (sh - size) / 2
      let wx = weights(width, sw), wy = weights(height, sh)
      for y in 0..<size {
        for x in 0..<size {
          for c in 0..<3 {
            var value = 0.0
            for (row, a) in wy[y + cropY] {
              for (column, b) in wx[x + cropX] {
                value += a * b * Double(image.pixels[(row * width + column) * 3 + c])
              }
            }
            let got = Int(seen.pixels[(y * size + x) * 3 + c])
            let fraction = value - value.rounded(.down)
            if abs(fraction - 0.5) < 1e-6 {
              XCTAssertTrue(got == Int(value.rounded(.down)) + 1 || got == Int(value.rounded(.down)))
            } else {
              XCTAssertEqual(
                got, Int((value + 0.5).rounded(.down)),
                "trial \(trial) \(width)x\(height)→\(size) at \(x),\(y),\(c)")
            }
          }
        }
      }
    }
  }

  func testNormalizeWritesCHWWithMeanAndStd() {
    let image = RGBImage(width: 2, height: 1, pixels: [255, 0, 51, 0, 255, 102])
    var out = [Float](repeating: .nan, count: 6)
    out.withUnsafeMutableBufferPointer {
      Preprocess.normalize(
        image, mean: Preprocess.imagenetMean, std: Preprocess.imagenetStd, into: $0.baseAddress!)
    }
    let expected: [Float] = [
      (1 - 0.485) / 0.229, (0 - 0.485) / 0.229,  // red plane
      (0 - 0.456) / 0.224, (1 - 0.456) / 0.224,  // green plane
      (0.2 - 0.406) / 0.225, (0.4 - 0.406) / 0.225,  // blue plane
    ]
    for i in 0..<6 { XCTAssertEqual(out[i], expected[i], accuracy: 1e-5) }
    let batch = Preprocess.batch([image, image], mean: [0, 0, 0], std: [1, 1, 1])
    XCTAssertEqual(batch.shape, [2, 3, 1, 2])
    let expectedBatch: [Float] = [1, 0, 0, 1, 0.2, 0.4, 1, 0, 0, 1, 0.2, 0.4]
    for (got, want) in zip(batch.array, expectedBatch) { XCTAssertEqual(got, want, accuracy: 1e-6) }
  }

  func testLoadDecodesAtReducedScaleThenCrops() throws {
    // testorig.jpg 227×149 at S = 32: DCT scale 4/8 (114×75 ≥ 64 > 3/8's 56), then 49×32, crop.
    let path = try corpusFile("jpeg/testorig.jpg")
    let seen = try Preprocess.load(path: path, size: 32)
    let decoded = try ImageDecoder().decode(path: path, minimumShorterSide: 64)
    XCTAssertEqual([decoded.width, decoded.height], [114, 75])
    XCTAssertEqual(seen, Preprocess.resizeAndCrop(decoded, size: 32))
    XCTAssertEqual([seen.width, seen.height], [32, 32])
  }

  func testWritersRoundTrip() throws {
    var generator = SeededGenerator(seed: 5)
    let noisy = RGBImage(
      width: 13, height: 7, pixels: (0..<273).map { _ in UInt8.random(in: 0...255, using: &generator) })
    XCTAssertEqual(try ImageDecoder().decode(bytes: try PNGWriter.encode(noisy), path: "round.png"), noisy)
    var smoothPixels: [UInt8] = []
    for y in 0..<32 { for x in 0..<48 { smoothPixels += [UInt8(x * 5), UInt8(y * 7), UInt8(128)] } }
    let smooth = RGBImage(width: 48, height: 32, pixels: smoothPixels)
    let jpeg = try JPEGWriter.encode(smooth, quality: 95)
    XCTAssertEqual(ImageFormat.detect(jpeg), .jpeg)
    let back = try ImageDecoder().decode(bytes: jpeg, path: "round.jpg")
    XCTAssertLessThan(differences(back, smooth).mean, 2)
    let coarse = try JPEGWriter.encode(smooth, quality: 10)
    XCTAssertLessThan(coarse.count, jpeg.count)
    let ppm = PPMWriter.encode(noisy)
    XCTAssertEqual(Array(ppm.prefix(10)), Array("P6\n13 7\n25".utf8))
    XCTAssertEqual(Array(ppm.suffix(273)), noisy.pixels)
  }

  func testFormatDetectionUsesMagicBytes() {
    XCTAssertEqual(ImageFormat.detect([0xFF, 0xD8, 0xFF, 0xE0]), .jpeg)
    XCTAssertEqual(ImageFormat.detect([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0]), .png)
    XCTAssertEqual(ImageFormat.detect(Array("GIF89a".utf8)), .other("GIF"))
    XCTAssertEqual(ImageFormat.detect(Array("BM....".utf8)), .other("BMP"))
    XCTAssertEqual(ImageFormat.detect(Array("RIFF\0\0\0\0WEBPVP8 ".utf8)), .other("WebP"))
    XCTAssertEqual(ImageFormat.detect(Array("hello".utf8)), .unknown)
    assertDecodeFails(Array("GIF89a\u{1}\u{0}\u{1}\u{0}".utf8), kind: .unsupportedFormat, "GIF")
  }
}
