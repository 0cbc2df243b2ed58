import ArgumentParser
import CaptionKit

struct DatasetCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "dataset", abstract: "Make datasets.", subcommands: [Shapes.self])

  struct Shapes: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "shapes", abstract: "Render the synthetic shapes dataset (SPEC §9).")

    func run() throws {
      try reportingErrors {
        throw CaptionError(.invalidArgument, path: "dataset shapes", "not built yet")
      }
    }
  }
}
