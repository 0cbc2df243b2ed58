import ArgumentParser
import CaptionKit

struct Describe: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "describe", abstract: "Caption images.")

  func run() throws {
    try reportingErrors {
      throw CaptionError(.invalidArgument, path: "describe", "not built yet")
    }
  }
}
