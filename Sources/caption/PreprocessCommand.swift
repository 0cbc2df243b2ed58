import ArgumentParser
import CaptionKit

struct Preprocess: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "preprocess", abstract: "Write an image as the network sees it.")

  func run() throws {
    try reportingErrors {
      throw CaptionError(.invalidArgument, path: "preprocess", "not built yet")
    }
  }
}
