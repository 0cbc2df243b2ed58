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
