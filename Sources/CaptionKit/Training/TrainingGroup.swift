import FoundationEssentials
import Glibc

/// The processes of one data-parallel training run (SPEC §8, "Several processes"): N ranks, each
/// computing the forward and backward pass of its share of every global batch. The gradients are
/// summed by a ring (`startSum`); the few counts of a step and the start-up checks go through rank 0
/// (`gather`, `broadcast`). Every sum is formed in an order fixed by the ranks and the buffer's
/// size alone, so every rank gets the same bits whatever the timing. A rank that does not answer
/// within the group's deadline ends the run (the implementation prints one line naming it and
/// exits 1).
///
/// A single process is the group `SingleProcess`: training then runs exactly as without a group.
public protocol TrainingGroup: AnyObject {
  var rank: Int { get }
  var size: Int { get }
  /// Rank 0 receives every rank's `bytes` into `all` (rank r's at offset r·bytes.count; its own at
  /// 0); the other ranks send theirs (`all` is not touched).
  func gather(_ bytes: UnsafeRawBufferPointer, into all: UnsafeMutableRawBufferPointer) throws
  /// Rank 0's `bytes` into every other rank's.
  func broadcast(_ bytes: UnsafeMutableRawBufferPointer) throws
  /// Starts replacing `values` by their element-wise sum over the ranks; the sum is there on every
  /// rank once `finishSums` returns, and `values` must stay untouched until then. Every rank starts
  /// the same sums (same sizes) in the same order.
  func startSum(_ values: UnsafeMutableBufferPointer<Float>) throws
  /// Advances the sums started without waiting (between the layers of a backward pass).
  func progressSums() throws
  /// Waits until every sum started is complete.
  func finishSums() throws
  /// The size of the gradients' buckets summed while the backward pass goes on (0: one sum after
  /// the backward pass).
  var bucketBytes: Int { get }
}

/// One process: no one to exchange with.
public final class SingleProcess: TrainingGroup {
  public init() {}
  public var rank: Int { 0 }
  public var size: Int { 1 }
  public func gather(_ bytes: UnsafeRawBufferPointer, into all: UnsafeMutableRawBufferPointer) throws {
    all.copyMemory(from: bytes)
  }
  public func broadcast(_ bytes: UnsafeMutableRawBufferPointer) throws {}
  public func startSum(_ values: UnsafeMutableBufferPointer<Float>) throws {}
  public func progressSums() throws {}
  public func finishSums() throws {}
  public var bucketBytes: Int { 0 }
}

extension TrainingGroup {
  /// Rank 0 writes the files and prints the progress.
  public var isWriter: Bool { rank == 0 }

  /// Replaces `values` on every rank by their element-wise sum over the ranks, added in rank order.
  /// `scratch` holds size·values.count elements (rank 0's workspace, reused between calls).
  func sum<Element: BinaryFloatingPoint>(
    _ values: UnsafeMutableBufferPointer<Element>, scratch: inout [Element]
  ) throws {
    guard size > 1 else { return }
    let count = values.count
    if scratch.count < size * count { scratch = [Element](repeating: 0, count: size * count) }
    try scratch.withUnsafeMutableBytes { all in try gather(UnsafeRawBufferPointer(values), into: all) }
    if isWriter {
      scratch.withUnsafeBufferPointer { all in
        // values = rank 0's + rank 1's + … in this order, element by element
        for i in 0..<count { values[i] = all[i] }
        for r in 1..<size {
          let part = all.baseAddress! + r * count
          for i in 0..<count { values[i] += part[i] }
        }
      }
    }
    try broadcast(UnsafeMutableRawBufferPointer(values))
  }

  /// Every rank's `rows` (each `width` floats; a rank may have none) one after the other in rank
  /// order, with each rank's row count: on rank 0, and on every rank when `everywhere` (else the
  /// other ranks get no rows, only the counts).
  func gatherRows(_ rows: [Float], width: Int, everywhere: Bool) throws -> (rows: [Float], counts: [Int]) {
    guard size > 1 else { return (rows, [rows.count / width]) }
    var counts = [Double](repeating: 0, count: size)
    counts[rank] = Double(rows.count / width)
    var scratch: [Double] = []
    try counts.withUnsafeMutableBufferPointer { try sum($0, scratch: &scratch) }
    let rowCounts = counts.map { Int($0) }
    let longest = rowCounts.max()! * width
    guard longest > 0 else { return ([], rowCounts) }
    let padded = rows + [Float](repeating: 0, count: longest - rows.count)
    var all = [Float](repeating: 0, count: size * longest)
    try padded.withUnsafeBytes { mine in try all.withUnsafeMutableBytes { try gather(mine, into: $0) } }
    if everywhere { try all.withUnsafeMutableBytes { try broadcast($0) } }
    guard everywhere || isWriter else { return ([], rowCounts) }
    var joined: [Float] = []
    joined.reserveCapacity(rowCounts.reduce(0, +) * width)
    for r in 0..<size { joined += all[(r * longest)..<(r * longest + rowCounts[r] * width)] }
    return (joined, rowCounts)
  }

  /// Fails (the same way on every rank) unless every rank passes the same fingerprint: what the
  /// ranks were started with (options, data, model) must match.
  func agree(on fingerprint: UInt64, what: String) throws {
    guard size > 1 else { return }
    var mine = [fingerprint]
    var all = [UInt64](repeating: 0, count: size)
    try mine.withUnsafeBytes { mine in try all.withUnsafeMutableBytes { try gather(mine, into: $0) } }
    // Rank 0 sends the first rank that differs (0: none) so that every rank fails alike.
    mine[0] = UInt64(all.firstIndex { $0 != all[0] } ?? 0)
    try mine.withUnsafeMutableBytes { try broadcast($0) }
    if mine[0] != 0 {
      throw CaptionError(
        .invalidArgument, path: "",
        "rank \(mine[0]) was started with a different \(what) than rank 0: every rank needs the same "
          + "options, data and model files")
    }
  }

  /// Rank 0's values of `tensors` into every rank's (the weights, heads and moments all start alike).
  func broadcast(_ tensors: [Tensor]) throws {
    guard size > 1 else { return }
    for tensor in tensors {
      try broadcast(UnsafeMutableRawBufferPointer(start: tensor.pointer, count: tensor.count * 4))
    }
  }
}

/// FNV-1a, 64 bits: the fingerprint of what a rank was started with.
struct Fingerprint {
  private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

  mutating func add(_ bytes: UnsafeRawBufferPointer) {
    for byte in bytes {
      value ^= UInt64(byte)
      value &*= 0x100_0000_01b3
    }
  }

  /// The text and a 0 after it (so that "ab", "c" and "a", "bc" differ).
  mutating func add(_ text: String) {
    var text = text + "\u{0}"
    text.withUTF8 { add(UnsafeRawBufferPointer($0)) }
  }
}
