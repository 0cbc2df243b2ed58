import CKernels
import Dispatch
import XCTest

@testable import CaptionKit

/// CKernels' small-row product C = beta C + bias + A Wᵀ (and `BLAS.linear`, which routes to it)
/// against a Double-precision loop on every instruction set: m = 1 … 9, 13 and past the threshold,
/// n and k not multiples of the 16-float vectors, strides wider than the rows, column ranges, beta 0
/// and 1, with and without bias; relative L2 error ≤ 1e-4 (seen: ~1e-7).
final class SmallGemmTests: XCTestCase {
  /// One product's operands, C's padding columns (ldc > n) set to a marker that must survive.
  private struct Case {
    let m, n, k, lda, ldw, ldc: Int
    let a, w, bias, c: Tensor

    init(m: Int, n: Int, k: Int, pad: Int, seed: UInt64) {
      (self.m, self.n, self.k) = (m, n, k)
      (lda, ldw, ldc) = (k + pad, k + 2 * pad, n + pad)
      a = randomTensor([m, lda], seed: seed)
      w = randomTensor([n, ldw], scale: 0.5, seed: seed + 1)
      bias = randomTensor([n], seed: seed + 2)
      c = randomTensor([m, ldc], seed: seed + 3)
      for i in 0..<m { for j in n..<ldc { c[i * ldc + j] = 1234 } }
    }

    /// beta · c + bias + a wᵀ in Double, over columns `columns` (others: c as it was).
    func expected(beta: Float, bias withBias: Bool, columns: Range<Int>) -> [Double] {
      var result = c.array.map(Double.init)
      for i in 0..<m {
        for j in columns {
          var sum = 0.0
          for p in 0..<k { sum += Double(a[i * lda + p]) * Double(w[j * ldw + p]) }
          if withBias { sum += Double(bias[j]) }
          result[i * ldc + j] = (beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])) + sum
        }
      }
      return result
    }
  }

  /// ‖got − expected‖₂ / ‖expected‖₂ over the columns that changed; the others must be untouched.
  private func check(
    _ got: Tensor, _ expected: [Double], _ t: Case, columns: Range<Int>, _ label: String,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    var difference = 0.0
    var norm = 0.0
    for i in 0..<t.m {
      for j in 0..<t.ldc {
        let index = i * t.ldc + j
        if columns.contains(j) {
          difference += (Double(got[index]) - expected[index]) * (Double(got[index]) - expected[index])
          norm += expected[index] * expected[index]
        } else {
          XCTAssertEqual(
            Double(got[index]), expected[index], "\(label): column \(j) changed", file: file, line: line)
        }
      }
    }
    let error = (difference / max(norm, 1e-300)).squareRoot()
    largestError = max(largestError, error)
    XCTAssertLessThanOrEqual(error, 1e-4, label, file: file, line: line)
  }

  private var largestError = 0.0

  func testKernelMatchesDoubleReferenceOnEveryInstructionSet() {
    defer { ck_set_isa(-1) }
    for isa in 0...ck_isa() {
      ck_set_isa(Int32(isa))
      XCTAssertEqual(ck_isa(), Int32(isa))
      for m in Array(1...9) + [13] {
        for (n, k) in [(1, 1), (3, 5), (7, 16), (37, 33), (19, 100), (5, 47)] {
          for (beta, withBias) in [(Float(0), false), (1, false), (0, true), (1, true), (0.5, true)] {
            // threads 0: ck_small_gemm itself; 3: ck_small_gemm_threads, 3 column ranges
            for threads in [0, 3] {
              let t = Case(m: m, n: n, k: k, pad: m % 3, seed: UInt64(m * 1000 + n * 10 + k))
              let label = "ISA \(isa) m \(m) n \(n) k \(k) beta \(beta) bias \(withBias) threads \(threads)"
              let expected = t.expected(beta: beta, bias: withBias, columns: 0..<n)
              // beta = 0 must not read C (NaN would spread)
              if beta == 0 { for i in 0..<m { for j in 0..<n { t.c[i * t.ldc + j] = .nan } } }
              let bias = withBias ? t.bias.pointer : nil
              if threads == 0 {
                ck_small_gemm(
                  Int32(m), 0, Int32(n), Int32(k), t.a.pointer, Int32(t.lda), t.w.pointer, Int32(t.ldw), bias,
                  beta, t.c.pointer, Int32(t.ldc))
              } else {
                ck_small_gemm_threads(
                  Int32(threads), Int32(m), Int32(n), Int32(k), t.a.pointer, Int32(t.lda), t.w.pointer,
                  Int32(t.ldw), bias, beta, t.c.pointer, Int32(t.ldc))
              }
              check(t.c, expected, t, columns: 0..<n, label)
            }
          }
        }
      }
      // A column range (what one thread does), its ends not on 4-column blocks.
      let t = Case(m: 5, n: 41, k: 29, pad: 2, seed: 77)
      let expected = t.expected(beta: 1, bias: true, columns: 3..<38)
      ck_small_gemm(
        5, 3, 38, 29, t.a.pointer, Int32(t.lda), t.w.pointer, Int32(t.ldw), t.bias.pointer, 1, t.c.pointer,
        Int32(t.ldc))
      check(t.c, expected, t, columns: 3..<38, "ISA \(isa) columns 3..<38")
    }
    print("SmallGemmTests: worst relative L2 error \(largestError) (bound 1e-4)")
  }

  /// `BLAS.linear` on 1 to 3 threads (from m = 2 on, the products are big enough to be split),
  /// both sides of `SmallGemm.maxRows` (OpenBLAS past it), every instruction set.
  func testLinearMatchesDoubleReferenceOnBothPathsAndThreads() {
    defer {
      ck_set_isa(-1)
      BLAS.setThreads(1)
    }
    XCTAssertGreaterThanOrEqual(SmallGemm.maxRows, 8)
    for isa in 0...ck_isa() {
      ck_set_isa(Int32(isa))
      for threads in [1, 2, 3] {
        BLAS.setThreads(threads)
        for m in [1, 3, 8, SmallGemm.maxRows, SmallGemm.maxRows + 1] {
          for (beta, withBias) in [(Float(0), true), (1, false), (1, true)] {
            let t = Case(m: m, n: 301, k: 257, pad: 1, seed: UInt64(m * 7 + threads))
            let expected = t.expected(beta: beta, bias: withBias, columns: 0..<t.n)
            BLAS.linear(
              m: m, n: t.n, k: t.k, x: t.a.pointer, ldx: t.lda, weight: t.w.pointer, ldw: t.ldw,
              bias: withBias ? t.bias.pointer : nil, beta: beta, y: t.c.pointer, ldy: t.ldc)
            check(
              t.c, expected, t, columns: 0..<t.n,
              "linear ISA \(isa) threads \(threads) m \(m) beta \(beta) bias \(withBias)")
          }
        }
      }
    }
  }

  /// Nothing to do: no rows, no columns, or an empty column range; k = 0 leaves beta C + bias.
  func testEmptyShapes() {
    let c = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
    let bias = Tensor(shape: [3], values: [10, 20, 30])
    let one = Tensor(shape: [1], values: [1])
    ck_small_gemm(0, 0, 3, 4, one.pointer, 4, one.pointer, 4, bias.pointer, 0, c.pointer, 3)
    ck_small_gemm(2, 2, 2, 4, one.pointer, 4, one.pointer, 4, bias.pointer, 0, c.pointer, 3)
    XCTAssertEqual(c.array, [1, 2, 3, 4, 5, 6])
    ck_small_gemm(2, 0, 3, 0, one.pointer, 0, one.pointer, 0, bias.pointer, 2, c.pointer, 3)
    XCTAssertEqual(c.array, [12, 24, 36, 18, 30, 42])
  }

  /// ForkJoin: every part runs exactly once, for any count of parts and threads, also when several
  /// threads call at once (all but one then run their parts themselves).
  func testForkJoinRunsEveryPartOnce() {
    let body: @convention(c) (UnsafeMutableRawPointer?, Int32) -> Void = { context, part in
      context!.assumingMemoryBound(to: Int32.self)[Int(part)] += 1
    }
    for threads in 1...4 {
      for parts in [0, 1, 2, 3, 7, 64] {
        var counts = [Int32](repeating: 0, count: max(parts, 1))
        for _ in 0..<20 {
          counts.withUnsafeMutableBufferPointer {
            ck_fork_join(Int32(threads), Int32(parts), body, $0.baseAddress)
          }
        }
        XCTAssertEqual(
          counts, [Int32](repeating: parts == 0 ? 0 : 20, count: max(parts, 1)),
          "\(threads) threads \(parts) parts")
      }
    }
    let callers = 4
    let counts = UnsafeMutablePointer<Int32>.allocate(capacity: callers * 8)
    counts.initialize(repeating: 0, count: callers * 8)
    defer { counts.deallocate() }
    let shared = UncheckedSendable(counts)
    DispatchQueue.concurrentPerform(iterations: callers) { caller in
      for _ in 0..<500 { ck_fork_join(2, 8, body, shared.value + caller * 8) }
    }
    XCTAssertEqual(
      Array(UnsafeBufferPointer(start: counts, count: callers * 8)),
      [Int32](repeating: 500, count: callers * 8))
  }

  /// Parallel.claim: every part runs once, each on a worker below `workers`, and parts that run at
  /// the same time have different workers (each marks its worker's slot busy while it runs and
  /// finds it free on entry); on the caller alone (one thread, or a call from inside a job) every
  /// part's worker is 0.
  func testClaimedPartsRunOnceEachOnAWorkerOfItsOwn() {
    BLAS.setThreads(2)
    defer { BLAS.setThreads(1) }
    let parts = 200
    let hits = UnsafeMutablePointer<Int32>.allocate(capacity: parts)
    let busy = UnsafeMutablePointer<Int32>.allocate(capacity: 16)
    let clashes = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    let workersSeen = UnsafeMutablePointer<Int32>.allocate(capacity: 16)
    for buffer in [(hits, parts), (busy, 16), (clashes, 1), (workersSeen, 16)] {
      buffer.0.initialize(repeating: 0, count: buffer.1)
    }
    defer { [hits, busy, clashes, workersSeen].forEach { $0.deallocate() } }
    var innerWorkers = Set<Int>()
    for _ in 0..<5 {
      Parallel.claim(parts: parts) { part, worker in
        guard worker >= 0 && worker < Parallel.workers else {
          clashes.pointee += 100
          return
        }
        if busy[worker] != 0 { clashes.pointee += 1 }
        busy[worker] = 1
        hits[part] += 1
        workersSeen[worker] += 1
        for _ in 0..<2000 { workersSeen[8 + worker] &+= 1 }  // a little work
        if part == 0 { Parallel.claim(parts: 3) { _, inner in innerWorkers.insert(inner) } }
        busy[worker] = 0
      }
    }
    XCTAssertEqual(Array(UnsafeBufferPointer(start: hits, count: parts)), [Int32](repeating: 5, count: parts))
    XCTAssertEqual(clashes.pointee, 0)
    XCTAssertEqual(workersSeen[0] + workersSeen[1], Int32(5 * parts))
    XCTAssertEqual(innerWorkers, [0])
    BLAS.setThreads(1)
    var alone = Set<Int>()
    Parallel.claim(parts: 4) { _, worker in alone.insert(worker) }
    XCTAssertEqual(alone, [0])
  }

  /// Parallel.ranges and Parallel.run (on the fork-join pool): the ranges tile 0..<count, every part
  /// runs once, and a call made from inside a job (which runs its parts on the calling thread)
  /// completes as well.
  func testParallelRangesRunEveryIndexOnce() {
    BLAS.setThreads(2)
    defer { BLAS.setThreads(1) }
    for count in [0, 1, 2, 5, 1000] {
      for parts in [1, 2, 3, 8] {
        let hits = UnsafeMutablePointer<Int32>.allocate(capacity: count + 1)
        let inner = UnsafeMutablePointer<Int32>.allocate(capacity: 8 * 3)
        hits.initialize(repeating: 0, count: count + 1)
        inner.initialize(repeating: 0, count: 8 * 3)
        defer {
          hits.deallocate()
          inner.deallocate()
        }
        for _ in 0..<10 {
          Parallel.ranges(count, parts: parts) { part, range in
            for i in range { hits[i] += 1 }
            Parallel.run(parts: 3) { innerPart in inner[part * 3 + innerPart] += 1 }
          }
        }
        let used = max(1, min(parts, count))
        XCTAssertEqual(
          Array(UnsafeBufferPointer(start: hits, count: count)), [Int32](repeating: 10, count: count),
          "count \(count) parts \(parts)")
        XCTAssertEqual(
          Array(UnsafeBufferPointer(start: inner, count: 8 * 3)),
          [Int32](repeating: 10, count: used * 3) + [Int32](repeating: 0, count: (8 - used) * 3),
          "count \(count) parts \(parts)")
      }
    }
  }
}
