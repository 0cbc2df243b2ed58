import ArgumentParser
import CaptionKit
import Foundation

@main
struct Caption: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "caption",
    abstract: "Caption images with a CNN encoder and a recurrent decoder, trained on your CPU.",
    discussion: """
      Examples:
        caption describe photo.jpg
        caption dataset shapes --out data/shapes --count 10000 --seed 1
        caption train --data data/shapes --out runs/shapes.safetensors
        caption evaluate --model runs/shapes.safetensors --data data/shapes --split test
        caption preprocess photo.jpg --out seen.png
      """,
    version: captionVersion,
    subcommands: [
      Describe.self, Train.self, Evaluate.self, Score.self, DatasetCommand.self, Preprocess.self,
      Info.self, Bench.self,
    ]
  )
}

let captionVersion = "0.1.0"

/// Runs a command body, turning a library error into one line on stderr and exit status 1 (SPEC §2).
func reportingErrors(_ body: () throws -> Void) throws {
  do {
    try body()
  } catch let error as CaptionError {
    printError(error.description)
    throw ExitCode(1)
  } catch let error as ExitCode {
    throw error
  } catch {
    // The library reports its failures as CaptionError; anything else still gets one line.
    printError(CaptionError(.io, path: "", "\((error as NSError).localizedDescription)").description)
    throw ExitCode(1)
  }
}

func printError(_ line: String, prefix: String = "caption: ") {
  FileHandle.standardError.write(Data((prefix + line + "\n").utf8))
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
    FileHandle.standardError.write(Data(("\r " + shown + "\u{1B}[K").utf8))
    drawn = true
  }

  func clear() {
    if drawn {
      FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
      drawn = false
    }
  }
}
