import CKernels
import Dispatch
import FoundationEssentials
import Glibc

/// Splits independent work over the compute threads (as many as OpenBLAS is set to use), for the
/// convolutions' shares of a batch, the GEMM's panels and the memory-bound loops around them (bias,
/// ReLU, pools, Adam). Each part gets one contiguous range of `0..<count`; parts must write
/// disjoint memory.
public enum Parallel {
  /// The number of compute threads (OpenBLAS's too: `BLAS.setThreads`).
  public static var workers: Int { BLAS.threads }

  /// The number of compute threads (`workers`), under the name the conv kernels use.
  public static var threads: Int { workers }

  /// `ranges` over as many parts as there are workers, each of at least `minimumPerPart` items.
  public static func forRanges(_ count: Int, minimumPerPart: Int = 1, _ body: (Range<Int>) -> Void) {
    ranges(count, parts: min(workers, count / max(minimumPerPart, 1))) { _, range in body(range) }
  }

  /// Splits 0..<count into at most `parts` contiguous ranges and runs `body(part, range)` for
  /// each, concurrently; `part` < `parts` indexes per-thread scratch (Winograd's padded planes).
  /// Parts must write disjoint memory.
  public static func ranges(_ count: Int, parts: Int, _ body: (Int, Range<Int>) -> Void) {
    let parts = max(1, min(parts, count))
    if parts == 1 {
      body(0, 0..<count)
      return
    }
    run(parts: parts) { part in body(part, piece(part, of: parts, in: count)) }
  }

  /// Part `part` of 0..<count split into `parts` contiguous ranges whose sizes differ by at most
  /// one: how `ranges` shares out its items, and how callers of `claim` cut theirs into pieces.
  public static func piece(_ part: Int, of parts: Int, in count: Int) -> Range<Int> {
    (count * part / parts)..<(count * (part + 1) / parts)
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

extension Parallel {
  /// Runs `body(part, worker)` for every part in 0..<parts, the compute threads claiming parts one
  /// at a time (`run`), so that a thread the host slows takes fewer of them; `worker` <
  /// `workers` names the thread that runs the part (`ck_fork_join_worker`): parts running at the
  /// same time have different ones, for per-thread scratch.
  public static func claim(parts: Int, _ body: (_ part: Int, _ worker: Int) -> Void) {
    run(parts: parts) { part in body(part, Int(ck_fork_join_worker())) }
  }
}

/// Carries a value the caller guarantees is used safely across threads (disjoint writes).
struct UncheckedSendable<Value>: @unchecked Sendable {
  let value: Value
  init(_ value: Value) { self.value = value }
}

/// A value computed on a thread of its own while the caller does other work (a search hashes the
/// model file while it loads the model). `value()` waits for it.
public final class Background<Value>: @unchecked Sendable {
  private let done = DispatchSemaphore(value: 0)
  private var result: Result<Value, Error>?  // written by the thread before `done` is signalled

  public init(_ body: @escaping () throws -> Value) {
    let work = UncheckedSendable(body)
    startThread { [self] in
      result = Result { try work.value() }
      done.signal()
    }
  }

  /// The value, or what the work threw; waits for the thread to finish.
  public func value() throws -> Value {
    done.wait()
    done.signal()  // a later call does not wait
    return try result!.get()
  }
}
