import Foundation

/// Where `describe` and `evaluate` find a model when `--model` is absent (SPEC §2):
/// `$CAPTION_MODEL` (set but missing is an error); else `models/shapes.safetensors` under the current
/// directory; else, from the executable's real path upwards, the first directory holding it.
public enum ModelLookup {
  public static let bundledRelativePath = "models/shapes.safetensors"

  public static func resolve(
    explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
    currentDirectory: String = FileManager.default.currentDirectoryPath,
    executablePath: String = CommandLine.arguments.first ?? ""
  ) throws -> String {
    let files = FileManager.default
    if let explicit { return explicit }
    if let fromEnvironment = environment["CAPTION_MODEL"] {
      guard files.fileExists(atPath: fromEnvironment) else {
        throw CaptionError(.unreadable, path: fromEnvironment, "CAPTION_MODEL names a file that does not exist")
      }
      return fromEnvironment
    }
    let local = currentDirectory + "/" + bundledRelativePath
    if files.fileExists(atPath: local) { return local }
    var folder = URL(fileURLWithPath: realExecutablePath(executablePath)).deletingLastPathComponent()
    while true {
      let candidate = folder.appendingPathComponent(bundledRelativePath).path
      if files.fileExists(atPath: candidate) { return candidate }
      let parent = folder.deletingLastPathComponent()
      if parent.path == folder.path { break }
      folder = parent
    }
    throw CaptionError(
      .unreadable, path: bundledRelativePath,
      "no model found: pass --model FILE, set CAPTION_MODEL, or run from the caption checkout")
  }

  /// The executable's path with symlinks resolved (/proc/self/exe on Linux).
  static func realExecutablePath(_ fallback: String) -> String {
    if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
      return resolved
    }
    return URL(fileURLWithPath: fallback).resolvingSymlinksInPath().path
  }
}
