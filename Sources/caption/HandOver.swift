import CaptionKit
import FoundationEssentials
import Glibc

/// Replaces this process with the executable `name` (`what`, in a message) built beside `caption`, with `arguments`; exit 1
/// with a line saying how to build it when it is missing. (`caption serve` and `caption train` under
/// mpirun: their libraries then cost `caption` nothing in build or start-up time.)
func handOver(to name: String, what: String, _ arguments: [String]) -> Never {
  let folder = URL(fileURLWithPath: ModelLocator.executablePath() ?? CommandLine.arguments[0])
    .deletingLastPathComponent()
  let path = folder.appendingPathComponent(name).path
  guard FileManager.default.isExecutableFile(atPath: path) else {
    printError(
      "\(path): \(what) is not built beside caption; build it with swift build -c release --product \(name)")
    Glibc.exit(1)
  }
  var argv = ([path] + arguments).map { strdup($0) } + [nil]
  execv(path, &argv)
  printError("\(path): cannot run: \(String(cString: strerror(errno)))")
  Glibc.exit(1)
}
