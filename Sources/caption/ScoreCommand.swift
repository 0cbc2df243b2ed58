import ArgumentParser
import CaptionKit

struct Score: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "score", abstract: "Score COCO-format results against references.")

  func run() throws {
    try reportingErrors {
      throw CaptionError(.invalidArgument, path: "score", "not built yet")
    }
  }
}
