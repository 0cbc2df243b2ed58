/// One sum over the ranks in flight: a ring all-reduce of a Float buffer of n elements over N ranks.
///
/// The buffer is cut into N chunks, chunk c = ⌊c·n/N⌋ ..< ⌊(c+1)·n/N⌋. Rank r sends to rank r+1 and
/// receives from rank r−1 (mod N), in 2(N−1) steps:
///
///     reduce-scatter, step s = 0 … N−2: send chunk r−s; receive chunk r−s−1 and add it to our own
///     all-gather,     step s = 0 … N−2: send chunk r+1−s; receive chunk r−s in place
///
/// After the first half rank r holds the whole sum of chunk r+1; after the second, every rank holds
/// every chunk's sum. Chunk c starts at rank c and gathers the ranks' values in ring order, so its
/// elements are always added as ((x_c + x_{c+1}) + …) + x_{c−1}: the same order whatever the timing,
/// and the same bits on every rank. Each rank sends and receives 2·(N−1)/N of the buffer.
struct RingSum {
  let values: UnsafeMutableBufferPointer<Float>
  /// The MPI tag of this sum's messages (sums in flight together differ).
  let tag: Int32
  /// The step whose messages are posted: 0 ..< N−1 reduce-scatter, N−1 ..< 2(N−1) all-gather.
  var step = 0

  /// Elements ⌊c·n/N⌋ ..< ⌊(c+1)·n/N⌋ of the buffer.
  func chunk(_ c: Int, of ranks: Int) -> Range<Int> {
    let c = ((c % ranks) + ranks) % ranks
    return (c * values.count / ranks)..<((c + 1) * values.count / ranks)
  }
}
