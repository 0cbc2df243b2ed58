import ArgumentParser
import CaptionKit

struct Evaluate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "evaluate", abstract: "Caption a dataset split and score it.")

  func run() throws {
    try reportingErrors {
      throw CaptionError(.invalidArgument, path: "evaluate", "not built yet")
    }
  }
}
