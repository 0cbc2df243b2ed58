import FoundationEssentials
import Glibc

/// Opening the files that must be regular files (models, training states, dataset files, scenes,
/// results, references, images, caches). The name is checked before it is opened: a FIFO would
/// block `open` until a writer came, and a device could give endless bytes. Every failure is a
/// `CaptionError` naming the file with the system's reason.
public enum RegularFile {
  /// An open descriptor for reading (and writing when `writable`; the caller closes it) and the
  /// file's size in bytes.
  public static func open(_ path: String, writable: Bool = false) throws -> (descriptor: Int32, size: Int) {
    try checkName(path)
    var info = stat()
    guard stat(path, &info) == 0 else {
      if errno == ENOENT { throw CaptionError(.unreadable, path: path, "no such file") }
      throw CaptionError(.unreadable, path: path, "cannot open: \(String(cString: strerror(errno)))")
    }
    try checkType(info, path: path)
    // Non-blocking, in case the name was replaced by a FIFO since the look above.
    let descriptor = Glibc.open(path, (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK | O_CLOEXEC)
    guard descriptor >= 0 else {
      throw CaptionError(.unreadable, path: path, "cannot open: \(String(cString: strerror(errno)))")
    }
    do {
      guard fstat(descriptor, &info) == 0 else {
        throw CaptionError(.unreadable, path: path, "cannot stat: \(String(cString: strerror(errno)))")
      }
      try checkType(info, path: path)
    } catch {
      _ = Glibc.close(descriptor)
      throw error
    }
    _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) & ~O_NONBLOCK)
    return (descriptor, Int(info.st_size))
  }

  /// The whole file; one larger than `maximumBytes` is refused (`what` names it in the message,
  /// e.g. "a dataset file").
  public static func read(_ path: String, maximumBytes: Int, what: String) throws -> [UInt8] {
    let (descriptor, size) = try open(path)
    defer { _ = Glibc.close(descriptor) }
    guard size <= maximumBytes else {
      throw CaptionError(
        .tooLarge, path: path, "\(size) bytes: larger than \(what) may be (\(maximumBytes) bytes)")
    }
    var bytes = [UInt8](repeating: 0, count: size)
    var done = 0
    while done < size {
      let got = bytes.withUnsafeMutableBytes {
        pread(descriptor, $0.baseAddress! + done, size - done, off_t(done))
      }
      if got < 0 && errno == EINTR { continue }
      guard got >= 0 else {
        throw CaptionError(.unreadable, path: path, "read failed: \(String(cString: strerror(errno)))")
      }
      if got == 0 { break }  // the file shrank while being read
      done += got
    }
    if done < size { bytes.removeSubrange(done...) }
    return bytes
  }

  /// Refuses a name the system would read differently: a NUL byte ends a C string early, so the
  /// file opened would be another one.
  public static func checkName(_ path: String) throws {
    if path.utf8.contains(0) { throw CaptionError(.unreadable, path: path, "the file name holds a NUL byte") }
  }

  /// What kind of file `mode` describes, for messages ("a FIFO").
  static func kind(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFREG: return "a regular file"
    case S_IFDIR: return "a directory"
    case S_IFIFO: return "a FIFO"
    case S_IFCHR: return "a character device"
    case S_IFBLK: return "a block device"
    case S_IFSOCK: return "a socket"
    default: return "a special file"
    }
  }

  private static func checkType(_ info: stat, path: String) throws {
    switch info.st_mode & S_IFMT {
    case S_IFREG: return
    case S_IFDIR: throw CaptionError(.notAFile, path: path, "is a directory, not a file")
    default: throw CaptionError(.notAFile, path: path, "not a regular file (\(kind(info.st_mode)))")
    }
  }
}

/// Writes all `count` bytes to `descriptor`, at `offset` (`pwrite`) or, when nil, at its position
/// (`write`), retrying after interruptions. Nil once all are written; else why not (the system's
/// reason, or "nothing written" when a call made no progress).
func writeFully(_ descriptor: Int32, _ bytes: UnsafeRawPointer, count: Int, at offset: Int? = nil) -> String?
{
  var done = 0
  while done < count {
    let written =
      offset.map { pwrite(descriptor, bytes + done, count - done, off_t($0 + done)) }
      ?? Glibc.write(descriptor, bytes + done, count - done)
    if written < 0 && errno == EINTR { continue }
    guard written > 0 else { return written < 0 ? String(cString: strerror(errno)) : "nothing written" }
    done += written
  }
  return nil
}
