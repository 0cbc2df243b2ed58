import FoundationEssentials
import Glibc

/// The `--cache` file: the preprocessed 8-bit S×S×3 images of one loader's image list, in list order,
/// read by offset (bounded memory: the kernel's page cache holds what fits).
///
/// Layout (little-endian):
///
///     "CAPCACHE"  UInt32 version = 1  UInt32 S  UInt64 count  UInt64 hash(ids, paths)
///     count × Int64 id      count × UInt8 status (1 = image stored, 2 = failed to load)
///     zero padding to a multiple of 4096, then count × S·S·3 bytes (HWC pixels)
///
/// A valid file at the path is read. Otherwise the images are written, as the loader meets them, into
/// a temporary file beside the path (a sparse file of the final size); when every entry is stored or
/// failed, the header is written and the file renamed into place (atomic, as AtomicFile does).
/// A stale, foreign or truncated file is rebuilt. `@unchecked Sendable`: the status array is
/// guarded by `lock`; pixels go through `pread`/`pwrite` at distinct offsets.
final class ImageCache: @unchecked Sendable {
  static let magic: [UInt8] = Array("CAPCACHE".utf8)
  static let version: UInt32 = 1

  enum Status: UInt8 { case missing = 0, stored = 1, failed = 2 }

  let path: String
  /// The regular file the cache lives in: `path`, symbolic links followed.
  private let target: String
  let imageSize: Int
  let count: Int
  let imageBytes: Int
  let dataOffset: Int
  private let ids: [Int]
  private let hash: UInt64
  private let lock = Lock()
  private var statuses: [Status]
  private var resolved: Int
  private var descriptor: Int32
  /// The temporary file while building; nil once the cache is complete.
  private var temporaryPath: String?
  /// A failure to finish the file (the loader goes on from the temporary file).
  private(set) var error: CaptionError?

  /// Opens a valid cache at `path` or starts building one beside it; throws when neither is possible.
  init(path: String, imageSize: Int, ids: [Int], paths: [String]) throws {
    self.path = path
    self.target = try AtomicFile.regularDestination(of: path)
    self.imageSize = imageSize
    self.count = ids.count
    self.imageBytes = imageSize * imageSize * 3
    self.ids = ids
    self.hash = ImageCache.fingerprint(ids: ids, paths: paths)
    let headerBytes = 32 + ids.count * 9
    self.dataOffset = (headerBytes + 4095) / 4096 * 4096
    self.statuses = [Status](repeating: .missing, count: ids.count)
    self.resolved = 0
    self.descriptor = -1
    if let stored = readValidHeader() {
      statuses = stored.statuses
      resolved = count
      descriptor = stored.descriptor
      return
    }
    let url = URL(fileURLWithPath: target)
    let folder = url.deletingLastPathComponent().path
    let temporary =
      folder + "/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let fd = open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
      throw CaptionError(
        .io, path: path, "cannot create the cache in \(folder): \(String(cString: strerror(errno)))")
    }
    guard ftruncate(fd, off_t(dataOffset + count * imageBytes)) == 0 else {
      let reason = String(cString: strerror(errno))
      close(fd)
      unlink(temporary)
      throw CaptionError(.io, path: path, "cannot size the cache file: \(reason)")
    }
    descriptor = fd
    temporaryPath = temporary
  }

  deinit {
    if descriptor >= 0 { close(descriptor) }
    if let temporaryPath { unlink(temporaryPath) }
  }

  /// Gives up building: removes the temporary file (called when the loader stops).
  func discardIfIncomplete() {
    lock.lock()
    defer { lock.unlock() }
    guard let temporary = temporaryPath else { return }
    unlink(temporary)
    temporaryPath = nil
    if error == nil { error = CaptionError(.io, path: path, "the cache was not finished") }
  }

  /// True once every entry is resolved and the file is at `path`.
  var isComplete: Bool {
    lock.lock()
    defer { lock.unlock() }
    return temporaryPath == nil && error == nil
  }

  func status(_ index: Int) -> Status {
    lock.lock()
    defer { lock.unlock() }
    return statuses[index]
  }

  /// Reads entry `index` (status `.stored`) into `pixels` (`S·S·3` bytes).
  func read(_ index: Int, into pixels: UnsafeMutablePointer<UInt8>) throws {
    var done = 0
    while done < imageBytes {
      let n = pread(
        descriptor, pixels + done, imageBytes - done, off_t(dataOffset + index * imageBytes + done))
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else {
        throw CaptionError(
          .io, path: path, "cache read failed: \(n < 0 ? String(cString: strerror(errno)) : "short file")")
      }
      done += n
    }
  }

  /// Stores entry `index` (a no-op once the cache is complete or broken).
  func store(_ index: Int, pixels: UnsafePointer<UInt8>) {
    guard status(index) == .missing, isBuilding else { return }
    if let reason = writeFully(descriptor, pixels, count: imageBytes, at: dataOffset + index * imageBytes) {
      abandon("cache write failed: \(reason)")
      return
    }
    resolve(index, .stored)
  }

  /// Marks entry `index` as an image that failed to load.
  func storeFailure(_ index: Int) {
    guard status(index) == .missing, isBuilding else { return }
    resolve(index, .failed)
  }

  private var isBuilding: Bool {
    lock.lock()
    defer { lock.unlock() }
    return temporaryPath != nil && error == nil
  }

  private func abandon(_ reason: String) {
    lock.lock()
    if error == nil { error = CaptionError(.io, path: path, reason) }
    lock.unlock()
  }

  private func resolve(_ index: Int, _ status: Status) {
    lock.lock()
    guard statuses[index] == .missing else {
      lock.unlock()
      return
    }
    statuses[index] = status
    resolved += 1
    let finished = resolved == count
    lock.unlock()
    if finished { finish() }
  }

  /// Writes the header, syncs and renames the temporary file into place.
  private func finish() {
    lock.lock()
    defer { lock.unlock() }
    guard let temporary = temporaryPath, error == nil else { return }
    var header = ImageCache.magic
    func append<T: FixedWidthInteger>(_ value: T) {
      withUnsafeBytes(of: value.littleEndian) { header.append(contentsOf: $0) }
    }
    append(ImageCache.version)
    append(UInt32(imageSize))
    append(UInt64(count))
    append(hash)
    for id in ids { append(Int64(id)) }
    header.append(contentsOf: statuses.map(\.rawValue))
    let written = header.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
    guard written == header.count, fsync(descriptor) == 0 else {
      error = CaptionError(.io, path: path, "cache write failed: \(String(cString: strerror(errno)))")
      return
    }
    guard rename(temporary, target) == 0 else {
      error = CaptionError(
        .io, path: path, "cannot rename the cache into place: \(String(cString: strerror(errno)))")
      return
    }
    temporaryPath = nil
  }

  /// The statuses and an open descriptor when `path` holds a complete cache of these images.
  private func readValidHeader() -> (statuses: [Status], descriptor: Int32)? {
    guard let (fd, size) = try? RegularFile.open(target) else { return nil }
    var keep = false
    defer { if !keep { close(fd) } }
    guard size == dataOffset + count * imageBytes else { return nil }
    var header = [UInt8](repeating: 0, count: 32 + count * 9)
    let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    guard n == header.count, Array(header[0..<8]) == ImageCache.magic else { return nil }
    func field<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
      header.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
    guard field(8, UInt32.self) == ImageCache.version, field(12, UInt32.self) == UInt32(imageSize),
      field(16, UInt64.self) == UInt64(count), field(24, UInt64.self) == hash
    else { return nil }
    for (i, id) in ids.enumerated() where field(32 + 8 * i, Int64.self) != Int64(id) { return nil }
    var stored: [Status] = []
    stored.reserveCapacity(count)
    for i in 0..<count {
      guard let status = Status(rawValue: header[32 + 8 * count + i]), status != .missing else {
        return nil
      }
      stored.append(status)
    }
    keep = true
    return (stored, fd)
  }

  /// FNV-1a over the ids and paths: a cache of another image list is not reused.
  static func fingerprint(ids: [Int], paths: [String]) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    func mix(_ byte: UInt8) {
      hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
    }
    for (id, path) in zip(ids, paths) {
      withUnsafeBytes(of: Int64(id).littleEndian) { $0.forEach(mix) }
      path.utf8.forEach(mix)
      mix(0)
    }
    return hash
  }
}
