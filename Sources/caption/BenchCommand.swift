import ArgumentParser
import CaptionKit

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench", abstract: "Measure training and captioning throughput.")

  func run() throws {
    try reportingErrors {
      throw CaptionError(.invalidArgument, path: "bench", "not built yet")
    }
  }
}
