import CMPI
import CaptionKit
import Foundation

/// The ranks of `mpirun -np N`, exchanging over Open MPI with non-blocking point-to-point messages:
/// rank 0 ↔ each other rank for the start-up and a step's counts, a ring (`RingSum`) for the
/// gradients. Every wait is polled against a deadline: `CAPTION_MPI_TIMEOUT`
/// seconds (default 30; the first exchange, which waits for every rank's start-up, 10 times that).
/// A rank that does not answer in time, or whose connection fails, ends the whole job: one line
/// naming it, then MPI_Abort (mpirun ends the other ranks; the exit status is not 0).
final class MPIGroup: TrainingGroup {
  let rank: Int
  let size: Int
  let timeout: Double
  /// `CAPTION_MPI_BUCKET_MB` (default 1): the gradients' buckets, summed while the backward pass
  /// goes on (0: one sum after the backward pass). docs/distributed.md has the measurements.
  let bucketBytes: Int
  private var exchanges = 0
  private let world = caption_mpi_world()
  /// Seconds spent waiting in exchanges (the reduction's share of a step).
  private(set) var secondsExchanging = 0.0
  private(set) var bytesSent = 0
  /// The sums in flight, their messages posted, and the chunk each receives into (reused).
  private var sums: [RingSum] = []
  private var sumRequests: [[(MPI_Request?, peer: Int)]] = []
  private var incoming: [UnsafeMutableBufferPointer<Float>] = []

  init() {
    MPI_Init(nil, nil)
    var rank: Int32 = 0
    var size: Int32 = 0
    MPI_Comm_rank(world, &rank)
    MPI_Comm_size(world, &size)
    MPI_Comm_set_errhandler(world, caption_mpi_errors_return())
    (self.rank, self.size) = (Int(rank), Int(size))
    let configured = ProcessInfo.processInfo.environment["CAPTION_MPI_TIMEOUT"].flatMap(Double.init)
    timeout = configured.map { max($0, 0.1) } ?? 30
    let megabytes = ProcessInfo.processInfo.environment["CAPTION_MPI_BUCKET_MB"].flatMap(Double.init) ?? 1
    bucketBytes = megabytes.isFinite && megabytes > 0 ? Int(min(megabytes, 1e6) * 1e6) : 0
  }

  /// The largest message MPI's `int` count takes at once; longer buffers go as several.
  private static let piece = 1 << 30

  func gather(_ bytes: UnsafeRawBufferPointer, into all: UnsafeMutableRawBufferPointer) throws {
    var requests: [(MPI_Request?, peer: Int)] = []
    if rank == 0 {
      all.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
      for peer in 1..<size {
        post(all.baseAddress! + peer * bytes.count, bytes.count, peer: peer, into: &requests, send: false)
      }
    } else {
      post(
        UnsafeMutableRawPointer(mutating: bytes.baseAddress!), bytes.count, peer: 0, into: &requests,
        send: true)
    }
    wait(&requests)
  }

  func broadcast(_ bytes: UnsafeMutableRawBufferPointer) throws {
    var requests: [(MPI_Request?, peer: Int)] = []
    if rank == 0 {
      for peer in 1..<size { post(bytes.baseAddress!, bytes.count, peer: peer, into: &requests, send: true) }
    } else {
      post(bytes.baseAddress!, bytes.count, peer: 0, into: &requests, send: false)
    }
    wait(&requests)
  }

  /// Starts sending (or receiving) `count` bytes at `pointer` to (from) `peer`, in pieces.
  private func post(
    _ pointer: UnsafeMutableRawPointer, _ count: Int, peer: Int, tag: Int32 = 7,
    into requests: inout [(MPI_Request?, peer: Int)],
    send: Bool
  ) {
    var offset = 0
    repeat {
      let length = Int32(min(Self.piece, count - offset))
      var request = caption_mpi_request_null()
      let status =
        send
        ? MPI_Isend(pointer + offset, length, caption_mpi_byte(), Int32(peer), tag, world, &request)
        : MPI_Irecv(pointer + offset, length, caption_mpi_byte(), Int32(peer), tag, world, &request)
      if status != MPI_SUCCESS { fail(peer: peer, errorCode: status) }
      if send { bytesSent += Int(length) }
      requests.append((request, peer))
      offset += Int(length)
    } while offset < count
  }

  /// Polls until every request is done; past the deadline, names the first peer still missing.
  private func wait(_ requests: inout [(MPI_Request?, peer: Int)]) {
    poll {
      let missing = pending(&requests)
      return missing.map { requests[$0].peer }
    }
  }

  /// The index of the first request of `requests` not done yet (nil: all are done).
  private func pending(_ requests: inout [(MPI_Request?, peer: Int)]) -> Int? {
    for i in requests.indices {
      var done: Int32 = 0
      let status = MPI_Test(&requests[i].0, &done, nil)
      if status != MPI_SUCCESS { fail(peer: requests[i].peer, errorCode: status) }
      if done == 0 { return i }
    }
    return nil
  }

  /// Calls `missing` until it returns nil (done), pausing between calls; past the deadline, the peer
  /// it last returned ends the run.
  private func poll(_ missing: () -> Int?) {
    let started = Date()
    let limit = exchanges == 0 ? 10 * timeout : timeout
    exchanges += 1
    var pause: UInt32 = 20  // µs, doubling up to 1 ms: the cores stay free for the other ranks
    while let peer = missing() {
      if Date().timeIntervalSince(started) > limit {
        stop(
          "rank \(peer) did not answer within \(Int(limit.rounded())) s "
            + "(CAPTION_MPI_TIMEOUT): ending the run")
      }
      usleep(pause)
      pause = min(pause * 2, 1000)
    }
    secondsExchanging += Date().timeIntervalSince(started)
  }

  // MARK: - Ring sums

  func startSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
    guard size > 1, !values.isEmpty else { return }
    let index = sums.count
    if incoming.count == index { incoming.append(UnsafeMutableBufferPointer(start: nil, count: 0)) }
    let longest = (values.count + size - 1) / size
    if incoming[index].count < longest {
      incoming[index].deallocate()
      incoming[index] = .allocate(capacity: longest)
    }
    sums.append(RingSum(values: values, tag: Int32(16 + index)))
    sumRequests.append([])
    postStep(index)
  }

  func progressSums() throws {
    for index in sums.indices { advance(index) }
  }

  func finishSums() throws {
    guard !sums.isEmpty else { return }
    poll {
      for index in sums.indices {
        if let missing = advance(index) { return sumRequests[index][missing].peer }
      }
      return nil
    }
    sums.removeAll(keepingCapacity: true)
    sumRequests.removeAll(keepingCapacity: true)
  }

  /// Posts the messages of sum `index`'s current step (nothing once it is complete).
  private func postStep(_ index: Int) {
    let ring = sums[index]
    guard ring.step < 2 * (size - 1) else { return }
    let (left, right) = ((rank + size - 1) % size, (rank + 1) % size)
    let reducing = ring.step < size - 1
    let s = reducing ? ring.step : ring.step - (size - 1)
    let sending = ring.chunk(reducing ? rank - s : rank + 1 - s, of: size)
    let receiving = ring.chunk(reducing ? rank - s - 1 : rank - s, of: size)
    let base = ring.values.baseAddress!
    if !receiving.isEmpty {
      let into = reducing ? incoming[index].baseAddress! : base + receiving.lowerBound
      post(into, receiving.count * 4, peer: left, tag: ring.tag, into: &sumRequests[index], send: false)
    }
    if !sending.isEmpty {
      post(
        base + sending.lowerBound, sending.count * 4, peer: right, tag: ring.tag,
        into: &sumRequests[index], send: true)
    }
  }

  /// Takes sum `index` through every step whose messages have arrived; returns the index of a
  /// request still pending (nil: the sum is complete).
  @discardableResult
  private func advance(_ index: Int) -> Int? {
    while sums[index].step < 2 * (size - 1) {
      if let missing = pending(&sumRequests[index]) { return missing }
      sumRequests[index].removeAll(keepingCapacity: true)
      let ring = sums[index]
      if ring.step < size - 1 {
        // The partial sum x_c + … + x_{r−1} arrived: add ours after it.
        let received = ring.chunk(rank - ring.step - 1, of: size)
        let partial = incoming[index].baseAddress!
        let own = ring.values.baseAddress! + received.lowerBound
        for i in 0..<received.count { own[i] = partial[i] + own[i] }
      }
      sums[index].step += 1
      postStep(index)
    }
    return nil
  }

  private func fail(peer: Int, errorCode: Int32) -> Never {
    var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
    var length: Int32 = 0
    MPI_Error_string(errorCode, &text, &length)
    stop("the connection to rank \(peer) failed (\(String(cString: text))): ending the run")
  }

  /// One line on stderr, then the whole job ends.
  func stop(_ reason: String, status: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("caption: rank \(rank): \(reason)\n".utf8))
    MPI_Abort(world, status)
    exit(status)
  }

  func finish() { MPI_Finalize() }
}
