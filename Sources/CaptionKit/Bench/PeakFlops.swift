import CKernels
import Dispatch
import FoundationEssentials
import Glibc

/// The FP32 peak of the compute threads at the instruction set in use, measured by CKernels' loop of
/// independent multiply-adds (PeakFlops.h) rather than taken from a data sheet: the two vCPUs of
/// some machines share one core's FMA pipes, so cores × width × clock would overstate it.
/// `caption bench --profile` reports each convolution's share of it.
public enum PeakFlops {
  /// The instruction sets `caption bench --isa` can force on the project's kernels (OpenBLAS picks
  /// its own: `OPENBLAS_CORETYPE=Haswell` in the environment makes it use AVX2).
  public enum ISA: String, CaseIterable, Sendable {
    case avx512, avx2, baseline

    var level: Int32 {
      switch self {
      case .avx512: return Int32(CK_ISA_AVX512)
      case .avx2: return Int32(CK_ISA_AVX2)
      case .baseline: return Int32(CK_ISA_GENERIC)
      }
    }
  }

  /// Makes the kernels use `isa`; false (and the best the CPU has stays in use) when the CPU lacks it.
  public static func force(_ isa: ISA) -> Bool {
    ck_set_isa(isa.level)
    if ck_isa() == isa.level { return true }
    ck_set_isa(-1)
    return false
  }

  /// `CAPTION_ISA` (SPEC §2): every command's kernels at a narrower instruction set than the CPU's
  /// best, to measure or test them on one machine. Nil when it is unset or applied; otherwise the
  /// reason it cannot be (an unknown name, or an instruction set this CPU lacks).
  public static func forceFromEnvironment() -> String? {
    // getenv, not ProcessInfo's environment: every command starts here, and building that
    // dictionary of the whole environment cost 0.4 ms of each short command's start.
    guard let raw = getenv("CAPTION_ISA") else { return nil }
    let value = String(cString: raw)
    guard !value.isEmpty else { return nil }
    guard let isa = ISA(rawValue: value) else {
      return "CAPTION_ISA: unknown instruction set '\(value)' (avx512, avx2 or baseline)"
    }
    return force(isa) ? nil : "CAPTION_ISA: this CPU has no \(value) instructions"
  }

  /// The instruction set the kernels use now (`ck_isa`), as the reports name it.
  public static var isaName: String {
    switch Int(ck_isa()) {
    case Int(CK_ISA_AVX512): return "AVX-512"
    case Int(CK_ISA_AVX2): return "AVX2"
    default: return "baseline x86-64"
    }
  }

  /// GFLOP/s of the compute threads (`Parallel.workers`) together: the best of `trials` runs of
  /// about `seconds` each. Each run hands out 16 parts per thread, so that a thread that starts
  /// late takes fewer parts instead of leaving one thread's share to the end.
  public static func measure(seconds: Double = 0.05, trials: Int = 5) -> Double {
    let flopsPerIteration = Double(ck_peak_flops_per_iteration())
    // Calibrate on one thread: iterations per second.
    var calibration = 10_000
    var perSecond = 0.0
    while perSecond == 0 {
      let start = DispatchTime.now().uptimeNanoseconds
      _ = ck_peak_flops_run(calibration)
      let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      if elapsed > 0.002 { perSecond = Double(calibration) / elapsed } else { calibration *= 4 }
    }
    let parts = 16 * Parallel.workers
    let iterationsPerPart = max(1, Int(perSecond * seconds / 16))
    var best = 0.0
    for _ in 0..<trials {
      let start = DispatchTime.now().uptimeNanoseconds
      Parallel.run(parts: parts) { _ in _ = ck_peak_flops_run(iterationsPerPart) }
      let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      best = max(best, Double(parts * iterationsPerPart) * flopsPerIteration / elapsed / 1e9)
    }
    return best
  }

  /// The peak a profile divides by, measured beside the work it profiles: briefly before each
  /// timed step and once after the last, then the median of those. The hosts these run on lend
  /// the same core to others for minutes at a time. On the AVX2 Zen 3, one peak taken before the
  /// steps came out at 135–194 GFLOP/s from one run to the next, a minute apart, and every share
  /// the run reported moved with it: with fixed weights, VGG-16's layers at 63–80% of it in one
  /// run and 50–63% in the next. Taken beside each step, the loop is slowed when the layers are,
  /// and three runs in a row gave 52–64%, 48–60% and 53–62%.
  public struct Beside {
    /// The rates measured so far, GFLOP/s.
    var rates: [Double] = []

    public init() {}

    /// One measurement: the best of 3 runs of 20 ms.
    public mutating func measure() { rates.append(PeakFlops.measure(seconds: 0.02, trials: 3)) }

    /// The median of the rates measured, logged as the peak line (SPEC §7).
    public func report(log: (String) -> Void) -> Double {
      let peak = Benchmark.median(rates)
      log(
        String(cFormat: "  peak %.1f GFLOP/s FP32", peak)
          + " (\(PeakFlops.isaName), \(Parallel.workers) threads: independent multiply-adds)")
      return peak
    }
  }
}
