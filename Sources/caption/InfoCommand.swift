import ArgumentParser
import CaptionKit

struct Info: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "info", abstract: "Describe a model file.")

  func run() throws {
    try reportingErrors {
      throw CaptionError(.invalidArgument, path: "info", "not built yet")
    }
  }
}
