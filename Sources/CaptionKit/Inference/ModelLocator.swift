import FoundationEssentials
import Glibc

/// Finds the model file for `describe` and `evaluate` when `--model` is absent (SPEC §2).
public enum ModelLocator {
  /// The model looked for by default, relative to a directory.
  public static let defaultRelativePath = "models/shapes.safetensors"

  /// In order: `explicit` (`--model`, returned as is: loading reports a missing file); else
  /// `$CAPTION_MODEL` (set but not an existing file is an error); else `models/shapes.safetensors`
  /// under `currentDirectory`; else, from the directory of `executablePath` (symlinks resolved)
  /// upwards, the first directory holding `models/shapes.safetensors`. Nothing found: an error
  /// saying how to give a model.
  public static func locate(
    explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
    currentDirectory: String = FileManager.default.currentDirectoryPath,
    executablePath: String? = ModelLocator.executablePath()
  ) throws -> String {
    if let explicit { return explicit }
    if let fromEnvironment = environment["CAPTION_MODEL"] {
      guard isFile(fromEnvironment) else {
        throw CaptionError(
          .unreadable, path: fromEnvironment.isEmpty ? "CAPTION_MODEL" : fromEnvironment,
          fromEnvironment.isEmpty
            ? "CAPTION_MODEL is set but empty" : "no such model file (named by CAPTION_MODEL)")
      }
      return fromEnvironment
    }
    let inCurrent = join(currentDirectory, defaultRelativePath)
    if isFile(inCurrent) { return defaultRelativePath }
    if let executablePath {
      var directory = URL(fileURLWithPath: resolvingSymlinks(executablePath))
        .deletingLastPathComponent().path
      while true {
        let candidate = join(directory, defaultRelativePath)
        if isFile(candidate) { return candidate }
        let parent = URL(fileURLWithPath: directory).deletingLastPathComponent().path
        if parent == directory || parent.isEmpty { break }
        directory = parent
      }
    }
    throw CaptionError(
      .unreadable, path: defaultRelativePath,
      "no model found: give one with --model FILE or CAPTION_MODEL=FILE, or put it at "
        + "\(defaultRelativePath) in the current directory or above the executable")
  }

  /// This process's executable, symlinks resolved (Linux: /proc/self/exe; else argv[0]).
  public static func executablePath() -> String? {
    if let linked = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
      return linked
    }
    return CommandLine.arguments.first.map(resolvingSymlinks)
  }

  private static func resolvingSymlinks(_ path: String) -> String {
    guard let resolved = realpath(path, nil) else { return path }
    defer { free(resolved) }
    return String(cString: resolved)
  }

  private static func isFile(_ path: String) -> Bool {
    var isDirectory = false
    return !path.isEmpty && FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
      && !isDirectory
  }

  private static func join(_ directory: String, _ relative: String) -> String {
    directory.hasSuffix("/") ? directory + relative : directory + "/" + relative
  }
}
