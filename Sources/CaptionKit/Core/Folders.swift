import FoundationEssentials
import Glibc

/// Output folders: made with their parents, removed with their contents, renamed into place; every
/// failure a `CaptionError` naming the folder and the system's reason.
public enum Folders {
  /// Creates a folder and its missing parents (nothing when it exists).
  public static func make(_ path: String) throws {
    try RegularFile.checkName(path)
    var info = stat()
    if stat(path, &info) == 0 {
      guard info.st_mode & S_IFMT == S_IFDIR else {
        throw CaptionError(.io, path: path, "exists and is not a folder")
      }
      return
    }
    let parent = parentFolder(of: path)
    if !parent.isEmpty && parent != path { try make(parent) }
    guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
      throw CaptionError(.io, path: path, "cannot create the folder: \(String(cString: strerror(errno)))")
    }
  }

  /// Removes a file, or a folder and everything in it (nothing when neither exists).
  public static func remove(_ path: String) throws {
    var status = stat()
    guard lstat(path, &status) == 0 else { return }
    do {
      try FileManager.default.removeItem(atPath: path)
    } catch {
      throw CaptionError(.io, path: path, "cannot remove it: \(systemReason(error))")
    }
  }

  /// Renames `from` to `to` (a folder may replace an empty folder).
  public static func move(_ from: String, to: String) throws {
    guard rename(from, to) == 0 else {
      throw CaptionError(.io, path: to, "cannot rename \(from) to it: \(String(cString: strerror(errno)))")
    }
  }

  /// The names in a folder (an empty list when it does not exist).
  public static func entries(_ path: String) throws -> [String] {
    guard FileManager.default.fileExists(atPath: path) else { return [] }
    do {
      return try FileManager.default.contentsOfDirectory(atPath: path)
    } catch {
      throw CaptionError(.unreadable, path: path, "cannot list the folder")
    }
  }
}
