import ArgumentParser
import CaptionKit
import FoundationEssentials
import Glibc

struct Info: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "info", abstract: "Describe a model file.",
    discussion: """
      Prints the model's configuration, vocabulary size, parameter count per tensor group,
      preprocessing, and the training provenance kept in its metadata.

      Examples:
        caption info models/shapes.safetensors
        caption info --json models/shapes.safetensors
      """)

  @Argument(help: "The model file (.safetensors).")
  var model: String

  @Flag(help: "Print one JSON object instead.") var json = false

  func run() throws {
    try reportingErrors {
      let file = try ModelFile.load(path: model)
      if json {
        StandardOutput.line(file.summaryJSON(path: model))
      } else {
        StandardOutput.lines(file.summary(path: model))
      }
    }
  }
}
