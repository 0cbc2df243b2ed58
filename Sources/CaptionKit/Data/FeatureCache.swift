import FoundationEssentials
import Glibc

/// The feature cache (`NAME.features`, SPEC §8): what a frozen encoder's `fc` reads for every
/// training and validation image (the pooled or flattened convolutional features, F floats),
/// computed once. One fixed-size record per image, in a memory-mapped file: the kernel pages the
/// records in and out, so a cache larger than memory is streamed, never loaded whole.
///
/// Layout (little-endian):
///
///     "CAPFEATS"  UInt32 version = 1  UInt32 F  UInt64 count  UInt64 key
///     count × UInt8 filled (1: the record holds that image's features, 0: not yet)
///     zero padding to a multiple of 4096, then count × F Float32 records
///
/// The key (`TrainingSession.featureCacheKey`, a `Fingerprint`) is a hash of everything the features depend on: the
/// convolutions' weights, the layer list, image size, mean, std, preprocessing and pooling, and the
/// image lists (ids, paths, order). A new file is created at its full size (space reserved up front)
/// with every record unfilled, then renamed into place; records are filled as training computes
/// them, so an interrupted run keeps what it filled. A record is written before its filled byte.
/// `@unchecked Sendable`: `filled` is guarded by `lock`; records go through `pwrite` and the mapping
/// at distinct offsets, and a record is read only after its filled byte is set.
public final class FeatureCache: @unchecked Sendable {
  static let magic: [UInt8] = Array("CAPFEATS".utf8)
  static let version: UInt32 = 1
  static let headerBytes = 32

  public let path: String
  /// Floats per record (F).
  public let featureCount: Int
  public let count: Int
  let key: UInt64
  let dataOffset: Int
  private let descriptor: Int32
  private let mapping: UnsafeMutableRawPointer
  private let mappedBytes: Int
  private let lock = Lock()
  private var filled: [UInt8]

  /// The file's size for `count` records of `featureCount` floats.
  static func layout(count: Int, featureCount: Int) -> (dataOffset: Int, size: Int) {
    let dataOffset = (headerBytes + count + 4095) / 4096 * 4096
    return (dataOffset, dataOffset + count * featureCount * 4)
  }

  /// Opens the cache at `path`, or creates an empty one there when there is none. A file made
  /// with another key (another encoder, preprocessing or image list) is refused, or replaced by an
  /// empty one when `replaceStale` (`stale` is then called); a truncated or malformed file is
  /// refused. Every refusal is one line naming the file.
  public init(
    path: String, key: UInt64, featureCount: Int, count: Int, replaceStale: Bool,
    stale: (String) -> Void = { _ in }
  ) throws {
    precondition(featureCount >= 1 && count >= 0)
    self.path = path
    self.key = key
    self.featureCount = featureCount
    self.count = count
    let (dataOffset, size) = FeatureCache.layout(count: count, featureCount: featureCount)
    self.dataOffset = dataOffset
    let target = try AtomicFile.regularDestination(of: path)
    if access(target, F_OK) != 0 {
      try FeatureCache.create(target, path: path, key: key, featureCount: featureCount, count: count)
    } else if let reason = try FeatureCache.staleness(
      target, path: path, key: key, featureCount: featureCount, count: count)
    {
      guard replaceStale else {
        throw CaptionError(
          .badDataset, path: path,
          "this feature cache was made \(reason): delete it or choose another --feature-cache")
      }
      stale("made \(reason): replaced by an empty one")
      try FeatureCache.create(target, path: path, key: key, featureCount: featureCount, count: count)
    }
    let (fd, actual) = try RegularFile.open(target, writable: true)
    guard actual == size else {
      close(fd)
      throw CaptionError(
        .truncated, path: path,
        "the feature cache has \(actual) bytes, \(size) expected for its \(count) images")
    }
    var flags = [UInt8](repeating: 0, count: count)
    let n = flags.withUnsafeMutableBytes {
      pread(fd, $0.baseAddress, $0.count, off_t(FeatureCache.headerBytes))
    }
    guard n == count, flags.allSatisfy({ $0 <= 1 }) else {
      close(fd)
      throw CaptionError(.corrupt, path: path, "the feature cache's filled flags are unreadable or not 0/1")
    }
    let mapped = mmap(nil, max(size, 1), PROT_READ, MAP_SHARED, fd, 0)
    guard let mapped, mapped != MAP_FAILED else {
      let reason = String(cString: strerror(errno))
      close(fd)
      throw CaptionError(.io, path: path, "cannot map the feature cache: \(reason)")
    }
    descriptor = fd
    mapping = mapped
    mappedBytes = max(size, 1)
    filled = flags
  }

  deinit {
    munmap(mapping, mappedBytes)
    close(descriptor)
  }

  /// Records filled so far.
  public var filledCount: Int {
    lock.lock()
    defer { lock.unlock() }
    return filled.reduce(0) { $0 + Int($1) }
  }

  public func isFilled(_ record: Int) -> Bool {
    lock.lock()
    defer { lock.unlock() }
    return filled[record] == 1
  }

  /// Copies filled record `record` (F floats) into `features`.
  public func read(_ record: Int, into features: UnsafeMutablePointer<Float>) {
    let source = (mapping + dataOffset + record * featureCount * 4).assumingMemoryBound(to: Float.self)
    features.update(from: source, count: featureCount)
  }

  /// Writes record `record` (F floats), then marks it filled.
  public func store(_ record: Int, features: UnsafePointer<Float>) throws {
    guard !isFilled(record) else { return }
    try write(UnsafeRawPointer(features), bytes: featureCount * 4, at: dataOffset + record * featureCount * 4)
    var one: UInt8 = 1
    try write(&one, bytes: 1, at: FeatureCache.headerBytes + record)
    lock.lock()
    filled[record] = 1
    lock.unlock()
  }

  /// Forces what was stored so far to the disk (at each checkpoint).
  public func synchronize() {
    _ = fdatasync(descriptor)
  }

  private func write(_ bytes: UnsafeRawPointer, bytes count: Int, at offset: Int) throws {
    if let reason = writeFully(descriptor, bytes, count: count, at: offset) {
      throw CaptionError(.io, path: path, "cannot write the feature cache: \(reason)")
    }
  }

  /// Nil when the file at `target` was made with this key and shape; else what it was made for.
  /// Throws when it is not a feature cache at all.
  private static func staleness(
    _ target: String, path: String, key: UInt64, featureCount: Int, count: Int
  ) throws -> String? {
    let (fd, _) = try RegularFile.open(target)
    defer { close(fd) }
    var header = [UInt8](repeating: 0, count: headerBytes)
    let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    guard n == headerBytes else {
      throw CaptionError(.truncated, path: path, "the feature cache is cut short (\(max(n, 0)) bytes)")
    }
    guard Array(header[0..<8]) == magic else {
      throw CaptionError(.corrupt, path: path, "not a feature cache (no CAPFEATS header)")
    }
    func field<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
      header.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
    guard field(8, UInt32.self) == version else {
      throw CaptionError(
        .corrupt, path: path, "feature cache version \(field(8, UInt32.self)), expected \(version)")
    }
    if field(16, UInt64.self) != UInt64(count) {
      return "for \(field(16, UInt64.self)) images, not these \(count)"
    }
    if field(12, UInt32.self) != UInt32(featureCount) {
      return "with \(field(12, UInt32.self)) features per image, not \(featureCount)"
    }
    if field(24, UInt64.self) != key {
      return "by another encoder, preprocessing or image list"
    }
    return nil
  }

  /// Writes an empty cache (header, no record filled, space reserved) beside `target` and renames it
  /// into place.
  private static func create(_ target: String, path: String, key: UInt64, featureCount: Int, count: Int)
    throws
  {
    let (_, size) = layout(count: count, featureCount: featureCount)
    let url = URL(fileURLWithPath: target)
    let folder = url.deletingLastPathComponent().path
    let temporary = folder + "/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let fd = open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
      throw CaptionError(
        .io, path: path, "cannot create the feature cache in \(folder): \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    func fail(_ what: String, _ code: Int32) -> CaptionError {
      unlink(temporary)
      return CaptionError(.io, path: path, "\(what): \(String(cString: strerror(code)))")
    }
    guard ftruncate(fd, off_t(size)) == 0 else { throw fail("cannot size the feature cache", errno) }
    // Reserve the blocks now, so that a full disk shows here rather than mid-training.
    let reserved = posix_fallocate(fd, 0, off_t(size))
    if reserved != 0 && reserved != EOPNOTSUPP && reserved != EINVAL {
      throw fail("cannot reserve \(size) bytes for the feature cache", reserved)
    }
    var header = magic
    func append<T: FixedWidthInteger>(_ value: T) {
      withUnsafeBytes(of: value.littleEndian) { header.append(contentsOf: $0) }
    }
    append(version)
    append(UInt32(featureCount))
    append(UInt64(count))
    append(key)
    let written = header.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    guard written == header.count, fsync(fd) == 0 else { throw fail("cannot write the feature cache", errno) }
    guard rename(temporary, target) == 0 else {
      throw fail("cannot rename the feature cache into place", errno)
    }
  }
}
