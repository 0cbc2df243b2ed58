import ArgumentParser
import CaptionKit
import FoundationEssentials
import Glibc

/// `caption serve ARGS` runs the `caption-serve` executable built beside `caption` with the same
/// arguments, so that the server's libraries cost `caption` nothing in build or start-up time.
struct Serve: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "serve",
    abstract: "Caption images over HTTP (runs caption-serve; see caption serve --help).",
    discussion: """
      Examples:
        caption serve
        caption serve --port 9000 --max-batch 32
      """)

  @Argument(parsing: .allUnrecognized, help: "The server's options (caption serve --help lists them).")
  var arguments: [String] = []

  func run() throws { Self.handOver(arguments) }

  /// Replaces this process with `caption-serve ARGUMENTS` (all of them, `--help` included, are the
  /// server's).
  static func handOver(_ arguments: [String]) -> Never {
    caption.handOver(to: "caption-serve", what: "the server", arguments)
  }
}
