/// The gradients of a data-parallel step in one flat buffer cut into buckets, each summed over the
/// ranks as soon as the backward pass has completed it (PyTorch DDP's scheme). The buckets take the
/// parameters in reverse order, which is roughly the order in which the backward pass completes
/// them (the output layer and the heads first, the first convolution last), about `bucketBytes`
/// each; while a bucket travels, the backward pass goes on with the layers below. With
/// `bucketBytes` 0 there is one bucket, summed after the backward pass.
///
/// Every rank cuts the same buckets and starts them in bucket order, whatever its share (a rank with
/// no images reports nothing and starts them all at the end), so the sums match up.
final class GradientBuckets {
  /// The parameters in bucket order; parameter i's gradient is at flat[offsets[i] ..< offsets[i+1]].
  let parameters: [Parameter]
  private let offsets: [Int]
  /// Bucket b holds parameters firstParameter[b] ..< firstParameter[b+1].
  private let firstParameter: [Int]
  private let index: [ObjectIdentifier: Int]
  private let flat: UnsafeMutableBufferPointer<Float>
  private let group: any TrainingGroup
  // This step: which parameters were reported, how many each bucket still waits for, how many
  // buckets were started, and the first error of the group (reported by `finish`).
  private var reported: [Bool]
  private var waitingFor: [Int]
  private var started = 0
  private var failure: Error?

  init(parameters trained: [Parameter], bucketBytes: Int, group: any TrainingGroup) {
    parameters = trained.reversed()
    var offsets = [0]
    var firstParameter = [0]
    var bucketStart = 0
    for (i, parameter) in parameters.enumerated() {
      offsets.append(offsets[i] + parameter.grad.count)
      if bucketBytes > 0 && 4 * (offsets[i + 1] - bucketStart) >= bucketBytes && i + 1 < parameters.count {
        firstParameter.append(i + 1)
        bucketStart = offsets[i + 1]
      }
    }
    firstParameter.append(parameters.count)
    self.offsets = offsets
    self.firstParameter = firstParameter
    index = Dictionary(uniqueKeysWithValues: parameters.enumerated().map { (ObjectIdentifier($1), $0) })
    flat = .allocate(capacity: offsets.last!)
    self.group = group
    reported = [Bool](repeating: false, count: parameters.count)
    waitingFor = [Int](repeating: 0, count: firstParameter.count - 1)
  }

  deinit { flat.deallocate() }

  var bucketCount: Int { firstParameter.count - 1 }

  /// Before a step's backward pass.
  func beginStep() {
    for i in reported.indices { reported[i] = false }
    for b in 0..<bucketCount { waitingFor[b] = firstParameter[b + 1] - firstParameter[b] }
    (started, failure) = (0, nil)
  }

  /// The backward pass's report: these parameters' gradients are complete. Starts every bucket
  /// (in order) that is complete, then lets the sums in flight advance.
  func gradientsFinal(_ done: [Parameter]) {
    for parameter in done {
      guard let i = index[ObjectIdentifier(parameter)], !reported[i] else { continue }
      reported[i] = true
      waitingFor[bucket(of: i)] -= 1
    }
    while started < bucketCount && waitingFor[started] == 0 { startNext() }
    if failure == nil {
      do { try group.progressSums() } catch { failure = error }
    }
  }

  /// After the backward pass: starts the buckets left, waits for every sum, and puts the sums back
  /// into the parameters' gradients.
  func finish() throws {
    while started < bucketCount { startNext() }
    if let failure { throw failure }
    try group.finishSums()
    for (i, parameter) in parameters.enumerated() {
      parameter.grad.pointer.update(from: flat.baseAddress! + offsets[i], count: parameter.grad.count)
    }
  }

  private func bucket(of parameter: Int) -> Int {
    var b = 0
    while firstParameter[b + 1] <= parameter { b += 1 }
    return b
  }

  /// Copies bucket `started`'s gradients into the flat buffer and starts its sum.
  private func startNext() {
    let (first, end) = (firstParameter[started], firstParameter[started + 1])
    for i in first..<end {
      (flat.baseAddress! + offsets[i]).update(
        from: parameters[i].grad.pointer, count: parameters[i].grad.count)
    }
    started += 1
    guard failure == nil else { return }
    do {
      try group.startSum(UnsafeMutableBufferPointer(rebasing: flat[offsets[first]..<offsets[end]]))
    } catch { failure = error }
  }
}
