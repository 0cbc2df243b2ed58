import FoundationEssentials
import Glibc

// The few services of the operating system and the C library that the library needs beyond the
// standard library and FoundationEssentials: locks, threads, standard error and printf-style
// numbers. (Foundation proper would bring them too, but linked into `caption` it doubled the
// executable and slowed every command's start: its relocations and its protocol conformances,
// which the Swift runtime scans on a type's first dynamic cast.)

/// A mutual-exclusion lock (a pthread mutex).
public final class Lock: @unchecked Sendable {
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

  public init() { pthread_mutex_init(mutex, nil) }

  deinit {
    pthread_mutex_destroy(mutex)
    mutex.deallocate()
  }

  public func lock() { pthread_mutex_lock(mutex) }
  public func unlock() { pthread_mutex_unlock(mutex) }

  /// `body` with the lock held.
  public func withLock<Result>(_ body: () throws -> Result) rethrows -> Result {
    lock()
    defer { unlock() }
    return try body()
  }
}

/// A lock with a condition variable: `wait()` (with the lock held) sleeps until `signal()` or
/// `broadcast()`, and holds the lock again when it returns.
public final class Condition: @unchecked Sendable {
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

  public init() {
    pthread_mutex_init(mutex, nil)
    pthread_cond_init(condition, nil)
  }

  deinit {
    pthread_cond_destroy(condition)
    pthread_mutex_destroy(mutex)
    condition.deallocate()
    mutex.deallocate()
  }

  public func lock() { pthread_mutex_lock(mutex) }
  public func unlock() { pthread_mutex_unlock(mutex) }
  public func wait() { pthread_cond_wait(condition, mutex) }
  public func signal() { pthread_cond_signal(condition) }
  public func broadcast() { pthread_cond_broadcast(condition) }
}

/// Starts `body` on a new, detached thread with a stack of `stackSize` bytes (8 MB, as much as the
/// main thread has, by default).
public func startThread(stackSize: Int = 8 << 20, _ body: @escaping () -> Void) {
  let status = startThreadIfPossible(stackSize: stackSize, body)
  precondition(status == 0, "cannot start a thread: \(String(cString: strerror(status)))")
}

/// `startThread`, or the error number `pthread_create` gave (nothing started) where the system
/// refuses a new thread: for work that can also be done later on the calling thread.
public func startThreadIfPossible(stackSize: Int = 8 << 20, _ body: @escaping () -> Void) -> Int32 {
  let box = Unmanaged.passRetained(ThreadBody(body))
  var attributes = pthread_attr_t()
  pthread_attr_init(&attributes)
  defer { pthread_attr_destroy(&attributes) }
  pthread_attr_setstacksize(&attributes, stackSize)
  pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
  var thread = pthread_t()
  let status = pthread_create(
    &thread, &attributes,
    { argument in
      Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue().body()
      return nil
    }, box.toOpaque())
  if status != 0 { box.release() }
  return status
}

private final class ThreadBody {
  let body: () -> Void
  init(_ body: @escaping () -> Void) { self.body = body }
}

/// Standard error, written with write(2) and no buffering: each call one write where it fits.
public enum StandardError {
  public static func write(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
      var offset = 0
      while offset < bytes.count {
        let written = Glibc.write(2, bytes.baseAddress! + offset, bytes.count - offset)
        if written < 0 && errno == EINTR { continue }
        if written <= 0 { return }  // nowhere left to report to
        offset += written
      }
    }
  }
}

extension String {
  /// The C library's printf formatting of numbers: `String(cFormat: "%.4f", x)`. Only for
  /// numeric conversions (`%d`, `%f`, `%g`, `%e`, `%x`, widths and precisions, `%%`).
  public init(cFormat format: String, _ arguments: CVarArg...) {
    self = withVaList(arguments) { list in
      var buffer = [CChar](repeating: 0, count: 128)
      let needed = Int(vsnprintf(&buffer, buffer.count, format, list))
      if needed < buffer.count { return String(cString: buffer) }
      return withVaList(arguments) { again in
        buffer = [CChar](repeating: 0, count: needed + 1)
        _ = vsnprintf(&buffer, buffer.count, format, again)
        return String(cString: buffer)
      }
    }
  }

  /// The text padded with spaces on the right to `width` characters (unchanged when longer).
  public func padded(to width: Int) -> String {
    count >= width ? self : self + String(repeating: " ", count: width - count)
  }
}

extension StringProtocol {
  /// The text without white space (spaces, tabs, line breaks) at either end.
  public func trimmingWhitespace() -> String {
    guard let first = firstIndex(where: { !$0.isWhitespace }) else { return "" }
    let last = lastIndex(where: { !$0.isWhitespace })!
    return String(self[first...last])
  }
}

/// The path without its last component, as NSString's `deletingLastPathComponent` gives it:
/// "a/b/c" → "a/b", "/a" → "/", "a" → "" (a bare name has no folder part); trailing slashes ignored.
public func parentFolder(of path: String) -> String {
  var path = Substring(path)
  while path.count > 1 && path.hasSuffix("/") { path = path.dropLast() }
  guard let slash = path.lastIndex(of: "/") else { return "" }
  var folder = path[..<slash]
  while folder.hasSuffix("/") { folder = folder.dropLast() }
  return folder.isEmpty ? "/" : String(folder)
}

/// The system's reason behind a file operation's error ("No such file or directory"), or the error
/// as text when it carries none.
public func systemReason(_ error: Error) -> String {
  if let error = error as? CocoaError, let underlying = error.userInfo["NSUnderlyingError"] as? POSIXError {
    return String(cString: strerror(underlying.code.rawValue))
  }
  if let error = error as? POSIXError { return String(cString: strerror(error.code.rawValue)) }
  return "\(error)"
}
