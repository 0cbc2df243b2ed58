import ArgumentParser
import CaptionKit

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train", abstract: "Train a model.")

  func run() throws {
    try reportingErrors {
      throw CaptionError(.invalidArgument, path: "train", "not built yet")
    }
  }
}
