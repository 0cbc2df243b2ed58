import CKernels

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
    run(parts: parts) { part in body(part, (count * part / parts)..<(count * (part + 1) / parts)) }
  }

  /// Runs `body(part)` for every part in 0..<parts on the compute threads and returns when all have
  /// run. It goes through CKernels' fork-join pool (`ck_fork_join`), whose threads spin for a
  /// moment between jobs: a training step hands out a few hundred jobs of tens of µs to a few ms
  /// (each decoder step's products), and waking a sleeping GCD worker for each cost about as much
  /// as the shorter ones. A call made from inside a job, or while another thread's job runs, runs
  /// its parts on the calling thread.
  public static func run(parts: Int, _ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { body in
      var job = body
      withUnsafeMutablePointer(to: &job) { job in
        ck_fork_join(
          Int32(workers), Int32(parts),
          { context, part in context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(part)) },
          job)
      }
    }
  }
}
