import ArgumentParser
import CaptionKit
import Foundation

struct Info: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "info", abstract: "Describe a model file.",
    discussion: """
      Prints the model's configuration, vocabulary size, parameter count per tensor group,
      preprocessing, and the training provenance kept in its metadata.

      Example:
        caption info models/shapes.safetensors
      """)

  @Argument(help: "The model file (.safetensors).")
  var model: String

  func run() throws {
    try reportingErrors {
      let file = try ModelFile.load(path: model)
      StandardOutput.lines(file.summary(path: model))
    }
  }
}
