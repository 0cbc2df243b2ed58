import CKernels
import XCTest

@testable import CaptionKit

/// The peak loop of `caption bench --profile` (PeakFlops): it must do the multiply-adds it counts,
/// at every instruction set the CPU has, and `--isa` must switch the kernels.
final class PeakFlopsTests: XCTestCase {
  /// ck_peak_flops_run's value is the sum of its 12 chains × W lanes, lane (c, j) starting at c + j
  /// and updated `iterations` times by x ← x · m + a: checked against the same recurrence in Float,
  /// one rounding per update where the level has FMA and two where it has not (so a loop that
  /// skipped or miscounted iterations would fail), and in Double over 1 000 iterations.
  func testPeakLoopComputesTheMultiplyAddsItCountsAtEveryInstructionSet() {
    defer { ck_set_isa(-1) }
    let (m, a) = (Float(0.999999), Float(1e-6))
    for isa in 0...ck_isa() {
      ck_set_isa(isa)
      let flopsPerIteration = Int(ck_peak_flops_per_iteration())
      let lanes = flopsPerIteration / 2 / 12
      XCTAssertEqual(lanes, [4, 8, 16][Int(isa)], "vector width at level \(isa)")
      for iterations in [1, 1000, 20_000] {
        var inFloat: Float = 0
        var inDouble = 0.0
        for c in 0..<12 {
          for j in 0..<lanes {
            var x = Float(c + j)
            var y = Double(c + j)
            for _ in 0..<iterations {
              x = isa > 0 ? a.addingProduct(x, m) : x * m + a
              y = y * Double(m) + Double(a)
            }
            inFloat += x
            inDouble += y
          }
        }
        let ours = ck_peak_flops_run(iterations)
        XCTAssertEqual(ours, inFloat, accuracy: inFloat * 1e-6, "level \(isa), \(iterations) iterations")
        if iterations <= 1000 {
          XCTAssertEqual(Double(ours), inDouble, accuracy: inDouble * 1e-4, "level \(isa), Double")
        }
      }
    }
  }

  func testForcingAnInstructionSetSwitchesTheKernelsAndTheBestIsRestoredAfter() {
    let best = ck_isa()
    defer { ck_set_isa(-1) }
    XCTAssertTrue(PeakFlops.force(.baseline))
    XCTAssertEqual(ck_isa(), Int32(CK_ISA_GENERIC))
    XCTAssertEqual(PeakFlops.isaName, "baseline x86-64")
    if best >= Int32(CK_ISA_AVX2) {
      XCTAssertTrue(PeakFlops.force(.avx2))
      XCTAssertEqual(PeakFlops.isaName, "AVX2")
    }
    if best < Int32(CK_ISA_AVX512) {
      XCTAssertFalse(PeakFlops.force(.avx512), "a CPU without AVX-512 refuses it")
      XCTAssertEqual(ck_isa(), best, "and keeps its best")
    }
    ck_set_isa(-1)
    XCTAssertEqual(ck_isa(), best)
  }

  func testMeasuredPeakIsAPositiveRate() {
    let peak = PeakFlops.measure(seconds: 0.002, trials: 1)
    XCTAssertTrue(peak.isFinite && peak > 0, "\(peak)")
  }

  /// A profile's peak is the median of the rates measured beside its steps, logged in SPEC §7's
  /// form: a slow reading (the host busy for a while) moves it by one place, not by its size.
  func testPeakBesideTheStepsIsTheMedianOfItsMeasurements() {
    var peaks = PeakFlops.Beside()
    peaks.measure()
    XCTAssertEqual(peaks.rates.count, 1)
    XCTAssertTrue(peaks.rates[0].isFinite && peaks.rates[0] > 0, "\(peaks.rates)")
    peaks.rates = [180, 95, 190, 175]
    var lines: [String] = []
    XCTAssertEqual(peaks.report { lines.append($0) }, 177.5)
    peaks.rates.append(20)
    XCTAssertEqual(peaks.report { lines.append($0) }, 175)
    XCTAssertEqual(lines.count, 2)
    XCTAssertTrue(lines[0].hasPrefix("  peak 177.5 GFLOP/s FP32 (\(PeakFlops.isaName), "), lines[0])
    XCTAssertTrue(lines[1].hasSuffix(" threads: independent multiply-adds)"), lines[1])
  }
}
