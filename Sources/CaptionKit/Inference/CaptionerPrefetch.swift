import FoundationEssentials
import Glibc

/// A captioner prepared on a thread of its own from the start of a process, while the command
/// line is still being parsed. In a one-image `caption describe`, reading the model and parsing the
/// command line each took about a fifth of the process, and building the captioner and its
/// encoder's weight transforms a tenth; side by side on two threads, that work costs the process
/// little more than the parse.
///
/// The thread finds the model path from the raw arguments (`path(forArguments:locate:)`), reads
/// that file, builds a captioner of it (`Captioner(modelPath:)`) and computes its encoder's weight
/// transforms (`Encoder.computeFixedTransforms`), all on that thread alone and all of them
/// depending on the file only: not on the compute threads, not on the decoding options. The
/// command takes it with `captioner(path:)` once it has resolved its model path the usual way: a
/// prefetch of that same path gives what it built (or the error it met, the one the command's own
/// build would have given); one of another path, or none, is not used. This work has no side
/// effects, so a prefetch the command never takes (a usage error, a missing image) only costs it.
public final class CaptionerPrefetch: @unchecked Sendable {
  /// Whether a thread was started: false where the system refused one (`captioner` builds then).
  public let isPreparing: Bool
  private let outcome = Outcome()

  /// What the thread leaves for the command.
  private final class Outcome: @unchecked Sendable {
    let finished = Condition()
    var isFinished = false  // under `finished`'s lock, as are the two below
    var path: String?
    var built: Result<Captioner, Error>?
  }

  /// Starts a thread that finds the model path of a command run with `arguments` (those after the
  /// subcommand's name; `locate` as the command resolves an absent `--model`), reads it, builds its
  /// captioner and computes the encoder's weight transforms.
  public init(arguments: [String], locate: @escaping @Sendable (String?) throws -> String) {
    let outcome = outcome
    isPreparing =
      startThreadIfPossible {
        let path = CaptionerPrefetch.path(forArguments: arguments, locate: locate)
        let built = path.map { path in
          Result {
            let captioner = try Captioner(modelPath: path)
            captioner.model.encoder.computeFixedTransforms()
            return captioner
          }
        }
        outcome.finished.lock()
        (outcome.path, outcome.built, outcome.isFinished) = (path, built, true)
        outcome.finished.signal()
        outcome.finished.unlock()
      } == 0
  }

  /// The captioner of the model at `path`: the prefetched one when the thread read that path
  /// (waiting for it to finish, and throwing what it threw), else one built now. Called once: the
  /// captioner is the caller's from then on.
  public func captioner(path: String) throws -> Captioner {
    guard isPreparing else { return try Captioner(modelPath: path) }
    outcome.finished.lock()
    while !outcome.isFinished { outcome.finished.wait() }
    let (builtPath, built) = (outcome.path, outcome.built)
    outcome.built = nil
    outcome.finished.unlock()
    guard let built, builtPath == path else { return try Captioner(modelPath: path) }
    return try built.get()
  }

  /// The model path a command run with `arguments` (those after the subcommand's name) will
  /// read, found before they are parsed: `--model FILE` or `--model=FILE` (the last one given),
  /// else what `locate(nil)` gives (the default search). Nil when the arguments ask for help or
  /// a version, or end in a bare `--model`, and when `locate` throws: then nothing is worth
  /// reading ahead, and the command reports any problem itself.
  public static func path(forArguments arguments: [String], locate: (String?) throws -> String)
    -> String?
  {
    var model: String? = nil
    var index = 0
    while index < arguments.count {
      let argument = arguments[index]
      if argument == "--" { break }  // what follows is positional
      if ["-h", "--help", "-help", "--version"].contains(argument) { return nil }
      if argument == "--model" {
        guard index + 1 < arguments.count else { return nil }
        model = arguments[index + 1]
        index += 2
        continue
      }
      if argument.hasPrefix("--model=") { model = String(argument.dropFirst("--model=".count)) }
      index += 1
    }
    return try? locate(model)
  }
}
