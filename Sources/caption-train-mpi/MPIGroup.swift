import CMPI
import CaptionKit
import Foundation

/// The ranks of `mpirun -np N`, exchanging over Open MPI with non-blocking point-to-point messages
/// (rank 0 ↔ each other rank). Every wait is polled against a deadline: `CAPTION_MPI_TIMEOUT`
/// seconds (default 30; the first exchange, which waits for every rank's start-up, 10 times that).
/// A rank that does not answer in time, or whose connection fails, ends the whole job: one line
/// naming it, then MPI_Abort (mpirun ends the other ranks; the exit status is not 0).
final class MPIGroup: TrainingGroup {
  let rank: Int
  let size: Int
  let timeout: Double
  private var exchanges = 0
  private let world = caption_mpi_world()
  /// Seconds spent waiting in exchanges (the reduction's share of a step).
  private(set) var secondsExchanging = 0.0
  private(set) var bytesSent = 0

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
    _ pointer: UnsafeMutableRawPointer, _ count: Int, peer: Int,
    into requests: inout [(MPI_Request?, peer: Int)],
    send: Bool
  ) {
    var offset = 0
    repeat {
      let length = Int32(min(Self.piece, count - offset))
      var request = caption_mpi_request_null()
      let status =
        send
        ? MPI_Isend(pointer + offset, length, caption_mpi_byte(), Int32(peer), 7, world, &request)
        : MPI_Irecv(pointer + offset, length, caption_mpi_byte(), Int32(peer), 7, world, &request)
      if status != MPI_SUCCESS { fail(peer: peer, errorCode: status) }
      if send { bytesSent += Int(length) }
      requests.append((request, peer))
      offset += Int(length)
    } while offset < count
  }

  /// Polls until every request is done; past the deadline, names the first peer still missing.
  private func wait(_ requests: inout [(MPI_Request?, peer: Int)]) {
    let started = Date()
    let limit = exchanges == 0 ? 10 * timeout : timeout
    exchanges += 1
    var pause: UInt32 = 20  // µs, doubling up to 1 ms: the cores stay free for the other ranks
    var pending = requests.indices.map { $0 }
    while !pending.isEmpty {
      pending = pending.filter { i in
        var done: Int32 = 0
        let status = MPI_Test(&requests[i].0, &done, nil)
        if status != MPI_SUCCESS { fail(peer: requests[i].peer, errorCode: status) }
        return done == 0
      }
      if pending.isEmpty { break }
      if Date().timeIntervalSince(started) > limit {
        stop(
          "rank \(requests[pending[0]].peer) did not answer within \(Int(limit.rounded())) s "
            + "(CAPTION_MPI_TIMEOUT): ending the run")
      }
      usleep(pause)
      pause = min(pause * 2, 1000)
    }
    secondsExchanging += Date().timeIntervalSince(started)
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
