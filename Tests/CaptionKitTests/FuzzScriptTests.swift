import XCTest

/// Runs bash with `arguments` (a script and its arguments) and `environment` added; its exit status
/// and stderr (stdout is dropped).
func runBash(_ arguments: [String], environment extra: [String: String] = [:]) throws -> (
  status: Int32, stderr: String
) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/bin/bash")
  process.arguments = arguments
  process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
  let errors = Pipe()
  process.standardError = errors
  process.standardOutput = FileHandle.nullDevice
  try process.run()
  let stderr = errors.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (process.terminationStatus, String(decoding: stderr, as: UTF8.self))
}

/// scripts/fuzz.sh and scripts/sanitize.sh (docs/robustness.md) are not run by CI (they take
/// minutes to hours); this checks what can be checked at once: they parse, refuse a bad request
/// before building anything, and every fuzz target has its seeds.
final class FuzzScriptTests: XCTestCase {
  func testTheScriptsParseAndRefuseBadRequestsBeforeBuilding() throws {
    for script in ["fuzz.sh", "sanitize.sh"] {
      let parsed = try runBash(["-n", packageRoot + "/scripts/" + script])
      XCTAssertEqual(parsed.status, 0, "\(script): \(parsed.stderr)")
    }
    for arguments in [[], ["0"], ["ten"], ["10", "nonsense"]] {
      let run = try runBash([packageRoot + "/scripts/fuzz.sh"] + arguments)
      XCTAssertEqual(run.status, 64, "\(arguments)")
      XCTAssertTrue(run.stderr.hasPrefix("usage: bash scripts/fuzz.sh SECONDS"), run.stderr)
    }
    XCTAssertEqual(try runBash([packageRoot + "/scripts/sanitize.sh", "nonsense"]).status, 64)
  }

  /// Each target the script knows has committed seeds; the corpus stays small (under 200 KB).
  func testEveryFuzzTargetHasASmallSeedCorpus() throws {
    let script = try String(contentsOfFile: packageRoot + "/scripts/fuzz.sh", encoding: .utf8)
    let line = try XCTUnwrap(script.split(separator: "\n").first { $0.hasPrefix("all=(") })
    let targets = line.dropFirst("all=(".count).dropLast().split(separator: " ").map(String.init)
    XCTAssertEqual(targets.count, 8, String(line))
    var total = 0
    for target in targets {
      let folder = packageRoot + "/scripts/fuzz-corpus/" + target
      let seeds = try FileManager.default.contentsOfDirectory(atPath: folder)
      XCTAssertFalse(seeds.isEmpty, target)
      for seed in seeds {
        total += try FileManager.default.attributesOfItem(atPath: folder + "/" + seed)[.size] as! Int
      }
    }
    XCTAssertLessThan(total, 200_000)
  }
}
