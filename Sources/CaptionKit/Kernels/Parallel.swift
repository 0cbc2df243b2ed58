import COpenBLAS
import Dispatch

/// The project's own threads, for the loops BLAS does not parallelise (transforms, im2col,
/// scatters). They follow the BLAS thread count (`caption bench --threads`, `BLAS.setThreads`).
public enum Parallel {
  /// The number of compute threads: OpenBLAS's current setting.
  public static var threads: Int { max(1, Int(openblas_get_num_threads())) }

  /// Splits 0..<count into at most `parts` contiguous ranges and runs `body(part, range)` for
  /// each, concurrently. `part` < `parts` indexes per-thread scratch.
  @inline(__always)
  public static func ranges(_ count: Int, parts: Int, _ body: (Int, Range<Int>) -> Void) {
    let parts = max(1, min(parts, count))
    if parts == 1 {
      body(0, 0..<count)
      return
    }
    // The parts touch disjoint memory (each caller's contract); the box only carries the closure
    // across concurrentPerform's @Sendable boundary, which returns before this function does.
    withoutActuallyEscaping(body) { body in
      let box = UncheckedBox(body)
      DispatchQueue.concurrentPerform(iterations: parts) { part in
        box.value(part, (count * part / parts)..<(count * (part + 1) / parts))
      }
    }
  }
}

private struct UncheckedBox<Value>: @unchecked Sendable {
  let value: Value
  init(_ value: Value) { self.value = value }
}
