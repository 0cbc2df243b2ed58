import FoundationEssentials
import Glibc

/// A model file read on a thread of its own from the start of a process, while the command line
/// is still being parsed. In a one-image `caption describe` reading the model and parsing the
/// command line each take about a fifth of the process; side by side on two threads, the read
/// costs the process little more than the parse.
///
/// The thread finds the model path from the raw arguments (`path(forArguments:locate:)`) and
/// reads that file. The command takes it with `modelFile(path:)` once it has resolved its model
/// path the usual way: a prefetch of that same path gives what it read (or the error it met, the
/// same one a read from the command would have given); one of another path, or none, is not
/// used. Reading a model has no side effects, so a prefetch the command never takes (a usage
/// error, a missing image) only costs the read.
public final class ModelPrefetch: @unchecked Sendable {
  /// Whether a thread was started: false where the system refused one (`modelFile` reads then).
  public let isReading: Bool
  private let outcome = Outcome()

  /// What the thread leaves for the command.
  private final class Outcome: @unchecked Sendable {
    let finished = Condition()
    var isFinished = false  // under `finished`'s lock, as are the two below
    var path: String?
    var read: Result<ModelFile, Error>?
  }

  /// Starts a thread that finds the model path of a command run with `arguments` (those after the
  /// subcommand's name; `locate` as the command resolves an absent `--model`) and reads it.
  public init(arguments: [String], locate: @escaping @Sendable (String?) throws -> String) {
    let outcome = outcome
    isReading =
      startThreadIfPossible {
        let path = ModelPrefetch.path(forArguments: arguments, locate: locate)
        let read = path.map { path in Result { try ModelFile.load(path: path) } }
        outcome.finished.lock()
        (outcome.path, outcome.read, outcome.isFinished) = (path, read, true)
        outcome.finished.signal()
        outcome.finished.unlock()
      } == 0
  }

  /// The model file at `path`: the prefetched one when the thread read that path (waiting for it
  /// to finish, and throwing what the read threw), else one read now. Called once.
  public func modelFile(path: String) throws -> ModelFile {
    guard isReading else { return try ModelFile.load(path: path) }
    outcome.finished.lock()
    while !outcome.isFinished { outcome.finished.wait() }
    let (readPath, read) = (outcome.path, outcome.read)
    outcome.finished.unlock()
    guard let read, readPath == path else { return try ModelFile.load(path: path) }
    return try read.get()
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
