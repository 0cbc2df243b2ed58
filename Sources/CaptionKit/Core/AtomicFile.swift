import Foundation

/// Writes files atomically: to a temporary file in the same folder, then a rename, so a crash
/// mid-write never leaves a half-written model, image or results file at the destination.
public enum AtomicFile {
  public static func write(_ bytes: [UInt8], to path: String) throws {
    try bytes.withUnsafeBytes { try write(UnsafeRawBufferPointer($0), to: path) }
  }

  public static func write(_ data: Data, to path: String) throws {
    try data.withUnsafeBytes { try write($0, to: path) }
  }

  public static func write(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
    let url = URL(fileURLWithPath: path)
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
    guard rename(temporary, path) == 0 else {
      let reason = String(cString: strerror(errno))
      unlink(temporary)
      throw CaptionError(.io, path: path, "cannot rename into place: \(reason)")
    }
  }
}
