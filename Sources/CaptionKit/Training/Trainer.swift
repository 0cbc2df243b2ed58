import CShims
import FoundationEssentials
import Glibc

/// What the trainer tells its caller as it goes; the command line draws a progress bar from it.
public struct TrainProgress: Sendable {
  public var epoch: Int
  public var epochs: Int
  public var batch: Int
  public var batchesPerEpoch: Int
  public var step: Int
  public var totalSteps: Int
  public var loss: Float
  public var imagesPerSecond: Double
  /// The time the remaining steps will take at the speed so far; nil until that speed is known.
  public var secondsLeft: Double?

  /// `h:mm:ss` of a duration in seconds.
  public static func clock(_ seconds: Double) -> String {
    let whole = seconds.isFinite ? Int(max(seconds, 0).rounded()) : 0
    return String(cFormat: "%ld:%02ld:%02ld", whole / 3600, whole / 60 % 60, whole % 60)
  }
}

/// The end of a run.
public struct TrainSummary: Sendable {
  public var interrupted: Bool
  public var epochsDone: Int
  public var steps: Int
  public var bestEpoch: Int?
  public var bestMetrics: [String: Double]
  public var seconds: Double
  public var imagesPerSecond: Double
  public var skippedImages: Int
  public var files: TrainingFiles
}

/// The files of SPEC §8 for `--out DIR/NAME.safetensors`.
public struct TrainingFiles: Sendable {
  public var best: String
  public var latest: String
  public var state: String
  public var log: String
  /// Held (`flock`) by the run writing these files; the kernel releases it when the run ends.
  public var lock: String
  public var folder: String
  public var stem: String

  public init(out: String) {
    best = out
    let url = URL(fileURLWithPath: out)
    folder = url.deletingLastPathComponent().path
    var name = url.lastPathComponent
    if name.hasSuffix(".safetensors") { name.removeLast(".safetensors".count) }
    stem = name
    latest = folder + "/" + name + ".latest.safetensors"
    state = folder + "/" + name + ".latest.state"
    log = folder + "/" + name + ".log.jsonl"
    lock = folder + "/" + name + ".lock"
  }

  /// Whether `name` (in `folder`) is one of this run's files: a temporary copy of it is this run's.
  func owns(_ name: String) -> Bool {
    let own = [best, latest, state, log].map { URL(fileURLWithPath: $0).lastPathComponent }
    if own.contains(name) { return true }
    // NAME.epochEEE.safetensors
    let prefix = stem + ".epoch"
    guard name.hasPrefix(prefix), name.hasSuffix(".safetensors") else { return false }
    let digits = name.dropFirst(prefix.count).dropLast(".safetensors".count)
    return !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
  }

  public func snapshot(epoch: Int) -> String {
    folder + "/" + stem + ".epoch" + String(cFormat: "%03ld", epoch) + ".safetensors"
  }
}

/// `caption train`: data, model, optimiser, the loop, validation, checkpoints and the log (SPEC §8).
public final class Trainer {
  public let options: TrainOptions
  public let files: TrainingFiles
  let log: (String) -> Void
  let progress: ((TrainProgress) -> Void)?
  let status: (String) -> Void
  /// The processes of a data-parallel run (SingleProcess: this one alone).
  let group: any TrainingGroup

  /// `log` receives one line at a time (warnings, validation results, the plain progress lines when
  /// `progress` is nil); `progress` is called after every step when the caller draws a bar; `status`
  /// names what is under way before the first step (`loading DATA`, `preparing captions 4096/8000
  /// images`), for a line redrawn on a terminal.
  public init(
    options: TrainOptions, log: @escaping (String) -> Void,
    progress: ((TrainProgress) -> Void)? = nil, status: @escaping (String) -> Void = { _ in },
    group: any TrainingGroup = SingleProcess()
  ) {
    self.group = group
    self.options = options
    self.files = TrainingFiles(out: options.out)
    self.log = log
    self.progress = progress
    self.status = status
  }

  /// Trains from scratch (or from `--init`), or continues the run whose state is at `files.state`.
  public func run(resume: Bool) throws -> TrainSummary {
    BLAS.setThreads(options.threads)
    let started = Date()
    try options.validate(resuming: resume)
    caption_install_interrupt_handlers()  // from here on Ctrl-C/SIGTERM stop the run (exit 130)
    // Only rank 0 of a data-parallel run writes the files (and holds the lock).
    var lock: TrainingLock?
    if group.isWriter {
      try Folders.make(files.folder)  // before the data is read: a bad --out fails at once
      lock = try TrainingLock(files: files)
      AtomicFile.removeLeftovers(in: files.folder, owned: files.owns)
    }
    defer { withExtendedLifetime(lock) {} }
    let session =
      try resume
      ? TrainingSession.resume(files: files, overriding: options, log: log, status: status, group: group)
      : TrainingSession.start(options: options, files: files, log: log, status: status, group: group)
    try session.joinGroup()
    return try session.train(log: log, progress: progress, started: started)
  }
}

/// An exclusive `flock` on `NAME.lock` beside the output, held while a run writes its files: a
/// second run with the same `--out` is refused. Opening it also shows at once that the folder is
/// writable. The kernel drops the lock when the process ends, however it ends.
final class TrainingLock {
  private let descriptor: Int32

  init(files: TrainingFiles) throws {
    descriptor = open(files.lock, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw CaptionError(
        .io, path: files.folder, "cannot write the run's files here: \(String(cString: strerror(errno)))")
    }
    var result: Int32
    repeat { result = flock(descriptor, LOCK_EX | LOCK_NB) } while result != 0 && errno == EINTR
    guard result == 0 else {
      let busy = errno == EWOULDBLOCK
      let reason = String(cString: strerror(errno))
      close(descriptor)
      throw CaptionError(
        .io, path: files.best,
        busy
          ? "another training run is writing this output (it holds \(files.lock))"
          : "cannot lock \(files.lock): \(reason)")
    }
  }

  deinit { close(descriptor) }
}
