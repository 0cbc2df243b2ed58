import FoundationEssentials
import Glibc

/// Writes files atomically: to a temporary file in the same folder, then a rename, so a crash
/// mid-write never leaves a half-written model, image or results file at the destination.
///
/// Only a regular file (or a new name) is replaced so. A symbolic link is followed and its target
/// replaced beside it (the link stays a link); a character device or a FIFO (`/dev/null`, a pipe
/// made with mkfifo) is written through, in place; a directory, block device or socket is refused.
public enum AtomicFile {
  /// How a write to a name reaches the disk.
  public enum Destination: Equatable, Sendable {
    /// A regular file or a new name, replaced by a rename at this path (symbolic links resolved).
    case replace(String)
    /// A character device or FIFO at this path, written directly.
    case stream(String)
  }

  public static func write(_ bytes: [UInt8], to path: String) throws {
    try bytes.withUnsafeBytes { try write(UnsafeRawBufferPointer($0), to: path) }
  }

  public static func write(_ data: Data, to path: String) throws {
    try data.withUnsafeBytes { try write($0, to: path) }
  }

  public static func write(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
    switch try destination(of: path) {
    case .stream(let target): try writeThrough(bytes, to: target, path: path)
    case .replace(let target): try replace(target, with: bytes, path: path)
    }
  }

  /// Where a write to `path` goes: its final symbolic links followed (up to 40), then by the kind of
  /// file found there. Errors name `path`.
  public static func destination(of path: String) throws -> Destination {
    try RegularFile.checkName(path)
    var target = path
    for _ in 0..<40 {
      var info = stat()
      guard lstat(target, &info) == 0 else {
        if errno == ENOENT { return .replace(target) }  // a new file (a missing folder fails at creation)
        throw CaptionError(.io, path: path, "cannot write: \(String(cString: strerror(errno)))")
      }
      switch info.st_mode & S_IFMT {
      case S_IFREG: return .replace(target)
      case S_IFCHR, S_IFIFO: return .stream(target)
      case S_IFLNK: target = try linkTarget(target, path: path)
      case S_IFDIR: throw CaptionError(.notAFile, path: path, "is a directory, not a file")
      default:
        throw CaptionError(
          .notAFile, path: path, "not a regular file (\(RegularFile.kind(info.st_mode))): not written")
      }
    }
    throw CaptionError(.io, path: path, "cannot write: too many levels of symbolic links")
  }

  /// The regular file a write to `path` replaces (`destination(of:)`'s `.replace`), for files that are
  /// read back and so cannot be a device or FIFO (a cache).
  public static func regularDestination(of path: String) throws -> String {
    switch try destination(of: path) {
    case .replace(let target): return target
    case .stream(let target):
      var info = stat()
      _ = stat(target, &info)
      throw CaptionError(.notAFile, path: path, "not a regular file (\(RegularFile.kind(info.st_mode)))")
    }
  }

  /// The name a symbolic link points to, relative names taken from the link's folder.
  private static func linkTarget(_ link: String, path: String) throws -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let length = readlink(link, &buffer, buffer.count - 1)
    guard length >= 0 else {
      throw CaptionError(.io, path: path, "cannot read the link: \(String(cString: strerror(errno)))")
    }
    let pointee = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    if pointee.hasPrefix("/") { return pointee }
    let folder = parentFolder(of: link)
    return folder.isEmpty ? pointee : folder + "/" + pointee
  }

  /// Removes the temporary files (`.NAME.tmp-*`) that writes killed mid-way left in `folder`, for
  /// the names `NAME` that `owned` accepts; returns how many were removed. Only for files no other
  /// process is writing (a caller holding a lock on them).
  @discardableResult
  public static func removeLeftovers(in folder: String, owned: (String) -> Bool) -> Int {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return 0 }
    var removed = 0
    for entry in entries where entry.hasPrefix(".") {
      guard let range = entry.ranges(of: ".tmp-").last else { continue }
      let name = String(entry[entry.index(after: entry.startIndex)..<range.lowerBound])
      if owned(name) && unlink(folder + "/" + entry) == 0 { removed += 1 }
    }
    return removed
  }

  /// Writes to a temporary file beside `target`, syncs it and renames it over `target`.
  private static func replace(_ target: String, with bytes: UnsafeRawBufferPointer, path: String) throws {
    let url = URL(fileURLWithPath: target)
    let folder = url.deletingLastPathComponent().path
    let temporary = folder + "/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    guard let file = fopen(temporary, "wb") else {
      throw CaptionError(
        .io, path: path, "cannot create a file in \(folder): \(String(cString: strerror(errno)))")
    }
    let written = bytes.count == 0 ? 0 : fwrite(bytes.baseAddress, 1, bytes.count, file)
    let flushed = fflush(file) == 0 && fsync(fileno(file)) == 0
    let closed = fclose(file) == 0
    guard written == bytes.count, flushed, closed else {
      let reason = String(cString: strerror(errno))
      unlink(temporary)
      throw CaptionError(.io, path: path, "write failed: \(reason)")
    }
    guard rename(temporary, target) == 0 else {
      let reason = String(cString: strerror(errno))
      unlink(temporary)
      throw CaptionError(.io, path: path, "cannot rename into place: \(reason)")
    }
  }

  /// Writes the bytes to a device or FIFO as they are (opening a FIFO waits for its reader).
  private static func writeThrough(_ bytes: UnsafeRawBufferPointer, to target: String, path: String) throws {
    let descriptor = open(target, O_WRONLY | O_CLOEXEC)
    guard descriptor >= 0 else {
      throw CaptionError(.io, path: path, "cannot open for writing: \(String(cString: strerror(errno)))")
    }
    defer { close(descriptor) }
    guard bytes.count > 0 else { return }
    if let reason = writeFully(descriptor, bytes.baseAddress!, count: bytes.count) {
      throw CaptionError(.io, path: path, "write failed: \(reason)")
    }
  }
}
