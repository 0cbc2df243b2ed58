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
/// Any other error but the command line's own (exit, usage) is also one line and status 1.
func reportingErrors(_ body: () throws -> Void) throws {
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
  let text = PrintableText.escaped(
    prefix + line, limit: PrintableText.maximumNameLength + PrintableText.maximumReasonLength)
  FileHandle.standardError.write(Data((text + "\n").utf8))
}
