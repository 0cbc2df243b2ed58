import Foundation
import XCTest

@testable import CaptionKit

final class TensorTests: XCTestCase {
  func testViewWritesThroughToBase() {
    let base = Tensor(zeros: [2, 3])
    let row = base.view(offset: 3, shape: [3])
    row[1] = 5
    XCTAssertEqual(base.array, [0, 0, 0, 0, 5, 0])
  }

  /// Every tensor that owns its memory starts on a 64-byte boundary (one cache line, one AVX-512
  /// vector), small ones from the heap and large ones from fresh pages alike, and starts zeroed.
  func testOwnedTensorsAreAlignedToCacheLinesAndZero() {
    var kept: [Tensor] = []  // alive together, so that each comes from a different place
    // 262_144 floats are `Tensor.largeBytes`, the first size given a mapping of its own.
    for count in [0, 1, 3, 15, 16, 17, 1000, 4097, 40_000, 262_143, 262_144, 300_000, 786_433, 1 << 21] {
      let tensor = Tensor(zeros: [count])
      XCTAssertEqual(Int(bitPattern: tensor.pointer) % 64, 0, "\(count) floats")
      XCTAssertTrue(tensor.buffer.allSatisfy { $0 == 0 }, "\(count) floats")
      tensor.buffer.update(repeating: 1)  // the whole extent is writable
      kept.append(tensor)
    }
    XCTAssertEqual(Int(bitPattern: kept[6].view(offset: 16, shape: [4]).pointer) % 64, 0)
  }

  /// A large tensor's mapping (whole 2 MB pages) is given back when the tensor is freed: its first
  /// and last pages are mapped while it lives and not after.
  func testLargeTensorsGiveTheirMappingBack() {
    var pages: [UnsafeMutableRawPointer] = []
    do {
      let tensor = Tensor(zeros: [(3 << 20) / 4 + 1])  // 3 MB and a float: two 2 MB pages
      tensor.fill(1)
      let start = UnsafeMutableRawPointer(tensor.pointer)
      XCTAssertEqual(Int(bitPattern: start) % (2 << 20), 0)
      pages = [start, start + (4 << 20) - 4096]
      var resident: UInt8 = 0
      for page in pages { XCTAssertEqual(mincore(page, 4096, &resident), 0, "mapped while alive") }
      XCTAssertEqual(tensor[tensor.count - 1], 1)
    }
    for page in pages {
      var resident: UInt8 = 0
      XCTAssertEqual(mincore(page, 4096, &resident), -1, "still mapped after the tensor is freed")
      XCTAssertEqual(errno, ENOMEM)
    }
  }

  /// `allFinite` finds a NaN or an infinity wherever it lies, the chunks' edges included, and
  /// passes the extreme finite values.
  func testAllFiniteFindsEveryNonFiniteValue() {
    let tensor = Tensor(zeros: [40_000])
    let finite: [Float] = [
      .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, -0.0, 1,
    ]
    for (i, value) in finite.enumerated() { tensor[i * 9_000] = value }
    XCTAssertTrue(tensor.allFinite)
    for position in [0, 16_383, 16_384, 32_768, 39_999] {
      for value in [Float.nan, -.nan, .signalingNaN, .infinity, -.infinity] {
        let kept = tensor[position]
        tensor[position] = value
        XCTAssertFalse(tensor.allFinite, "\(value) at \(position)")
        tensor[position] = kept
      }
    }
    XCTAssertTrue(tensor.allFinite)
    XCTAssertTrue(Tensor(zeros: [0]).allFinite)
    XCTAssertFalse(Tensor(shape: [], values: [.nan]).allFinite)
  }

  func testGemmMatchesHandComputedProduct() {
    // [1 2; 3 4] · [5 6; 7 8]ᵀ = [17 23; 39 53]
    let a: [Float] = [1, 2, 3, 4]
    let b: [Float] = [5, 6, 7, 8]
    var c = [Float](repeating: 0, count: 4)
    BLAS.gemm(transA: false, transB: true, m: 2, n: 2, k: 2, a: a, lda: 2, b: b, ldb: 2, c: &c, ldc: 2)
    XCTAssertEqual(c, [17, 23, 39, 53])
  }

  func testConfigRoundTripsThroughJSON() throws {
    let config = ModelConfig(vocabSize: 10, pool: .flatten)
    let data = try JSONEncoder().encode(config)
    let text = String(decoding: data, as: UTF8.self)
    XCTAssertTrue(text.contains("\"M\""))
    XCTAssertEqual(try JSONDecoder().decode(ModelConfig.self, from: data), config)
  }
}
