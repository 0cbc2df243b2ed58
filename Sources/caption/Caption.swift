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
      Info.self, Bench.self, Serve.self,
    ]
  )
}

extension Caption {
  /// `caption serve ...` hands every argument to the server executable before any parsing here.
  static func main() {
    let arguments = Array(CommandLine.arguments.dropFirst())
    if arguments.first == "serve" { Serve.handOver(Array(arguments.dropFirst())) }
    main(nil)
  }
}

let captionVersion = "0.1.0"

/// Runs a command body, turning a library error into one line on stderr and exit status 1 (SPEC §2).
func reportingErrors(_ body: () throws -> Void) throws {
  do {
    try body()
  } catch let error as CaptionError {
    printError(error.description)
    throw ExitCode(1)
  }
}

func printError(_ line: String, prefix: String = "caption: ") {
  FileHandle.standardError.write(Data((prefix + line + "\n").utf8))
}
