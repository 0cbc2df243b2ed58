import ArgumentParser
import CaptionKit
import FoundationEssentials
import Glibc

@main
struct Caption: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "caption",
    abstract: "Caption images with a CNN encoder and a recurrent decoder, trained on your CPU.",
    discussion: """
      Examples:
        caption describe datasets/shapes/examples/000001.png
        caption dataset shapes --out data/shapes --count 10000 --seed 1
        caption train --data data/shapes --out runs/shapes.safetensors
        caption evaluate --model runs/shapes.safetensors --data data/shapes
        caption preprocess photo.jpg --out seen.png
      """,
    version: captionVersion,
    subcommands: [
      Describe.self, Train.self, Evaluate.self, Score.self, DatasetCommand.self, Preprocess.self,
      Info.self, Bench.self, Serve.self, Features.self, Embed.self, IndexCommand.self, Search.self,
      Calibrate.self,
    ]
  )
}

extension Caption {
  /// `caption serve ...` hands every argument to the server executable before any parsing here.
  static func main() {
    let arguments = Array(CommandLine.arguments.dropFirst())
    if arguments.first == "serve" { Serve.handOver(Array(arguments.dropFirst())) }
    if let problem = PeakFlops.forceFromEnvironment() {
      printError(problem)
      Glibc.exit(1)
    }
    if arguments.first == "describe" {
      // A describe's arguments in their plain forms are read without ArgumentParser
      // (`Describe.parsedDirectly`), unless `CAPTION_FULL_PARSE` is set.
      if getenv("CAPTION_FULL_PARSE") == nil,
        let command = Describe.parsedDirectly(Array(arguments.dropFirst()))
      {
        do { try command.run() } catch { exit(withError: error) }
        return
      }
      // Otherwise the model is read and its captioner built on a thread of its own while the
      // command line is parsed.
      Describe.prefetch = CaptionerPrefetch(
        arguments: Array(arguments.dropFirst()), locate: { try ModelLocator.locate(explicit: $0) })
    }
    main(nil)
  }
}

let captionVersion = "0.1.0"

/// Runs a command body, turning a library error into one line on stderr and exit status 1 (SPEC §2).
/// Any other error but the command line's own (exit, usage) is also one line and status 1.
func reportingErrors(_ body: () throws -> Void) throws {
  // A closed pipe is an error from write(2), not a signal: StandardOutput and file writes see it.
  signal(SIGPIPE, SIG_IGN)
  do {
    try body()
  } catch let error as CaptionError {
    printError(error.description)
    throw ExitCode(1)
  } catch let error where error is ExitCode || error is ValidationError || error is CleanExit {
    throw error
  } catch {
    printError((error as? LocalizedError)?.errorDescription ?? "\(error)")
    throw ExitCode(1)
  }
}

/// One line on stderr, control characters escaped and cut to a readable length (SPEC §2).
func printError(_ line: String, prefix: String = "caption: ") {
  let longest = prefix.count + PrintableText.maximumNameLength + 2 + PrintableText.maximumReasonLength
  let text = PrintableText.escaped(prefix + line, limit: longest)
  StandardError.write(text + "\n")
}

/// stdout, line by line, unbuffered, through one writer: a closed pipe (`| head`) ends the process
/// quietly with status 0; any other failed write (a full disk, /dev/full) is one line on stderr and
/// status 1, so that no output is lost silently.
enum StandardOutput {
  /// One line; control characters escaped.
  static func line(_ text: String) {
    write(PrintableText.escaped(text) + "\n")
  }

  /// Lines, each escaped; a final line break is added when missing.
  static func lines(_ text: String) {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    let kept = text.hasSuffix("\n") ? lines.dropLast() : lines[...]
    write(kept.map { PrintableText.escaped(String($0)) + "\n" }.joined())
  }

  private static func write(_ text: String) {
    signal(SIGPIPE, SIG_IGN)
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
      let written = bytes.withUnsafeBytes { Glibc.write(STDOUT_FILENO, $0.baseAddress, $0.count) }
      if written < 0 && errno == EINTR { continue }
      if written < 0 && errno == EPIPE { exit(0) }  // the reader is gone
      guard written > 0 else {
        let reason = written < 0 ? String(cString: strerror(errno)) : "nothing written"
        printError("standard output: write failed: \(reason)")
        exit(1)
      }
      bytes = bytes.dropFirst(written)
    }
  }
}

/// One status line redrawn in place on stderr when stderr is a terminal; nothing otherwise.
final class TerminalLine {
  let enabled = isatty(2) != 0
  private var drawn = false

  func show(_ text: String) {
    guard enabled else { return }
    // Cut to the terminal's width: a wrapped line could not be redrawn in place.
    var size = winsize()
    let columns =
      withUnsafeMutablePointer(to: &size) { ioctl(2, UInt(TIOCGWINSZ), $0) } == 0 ? Int(size.ws_col) : 0
    let shown = columns > 2 ? String(text.prefix(columns - 2)) : text
    StandardError.write("\r " + shown + "\u{1B}[K")
    drawn = true
  }

  func clear() {
    if drawn {
      StandardError.write("\r\u{1B}[K")
      drawn = false
    }
  }
}
