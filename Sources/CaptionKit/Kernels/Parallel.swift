import Dispatch

extension Parallel {
  /// The number of compute threads (`workers`), under the name the conv kernels use.
  public static var threads: Int { workers }

  /// Splits 0..<count into at most `parts` contiguous ranges and runs `body(part, range)` for
  /// each, concurrently; `part` < `parts` indexes per-thread scratch (Winograd's padded planes).
  /// Parts must write disjoint memory.
  public static func ranges(_ count: Int, parts: Int, _ body: (Int, Range<Int>) -> Void) {
    let parts = max(1, min(parts, count))
    if parts == 1 {
      body(0, 0..<count)
      return
    }
    withoutActuallyEscaping(body) { body in
      let task = UncheckedSendable(body)
      DispatchQueue.concurrentPerform(iterations: parts) { part in
        task.value(part, (count * part / parts)..<(count * (part + 1) / parts))
      }
    }
  }
}
