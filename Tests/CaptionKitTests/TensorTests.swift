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
    for count in [0, 1, 3, 15, 16, 17, 1000, 4097, 40_000, 300_000, 1 << 21] {
      let tensor = Tensor(zeros: [count])
      XCTAssertEqual(Int(bitPattern: tensor.pointer) % 64, 0, "\(count) floats")
      XCTAssertTrue(tensor.buffer.allSatisfy { $0 == 0 }, "\(count) floats")
      tensor.buffer.update(repeating: 1)  // the whole extent is writable
      kept.append(tensor)
    }
    XCTAssertEqual(Int(bitPattern: kept[6].view(offset: 16, shape: [4]).pointer) % 64, 0)
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
