/// The shapes dataset's own random generator (SplitMix64), so a seed renders the same bytes on every
/// machine and every Swift version: no Foundation or standard-library randomness, and only integer
/// arithmetic to draw numbers (doubles come from the top 53 bits, exactly).
public struct ShapesRandom {
  public private(set) var state: UInt64

  public init(seed: UInt64) { state = seed }

  /// An independent stream for item `index` of a run seeded `seed` (images render in any order).
  public init(seed: UInt64, stream index: UInt64) {
    var mixer = ShapesRandom(seed: seed ^ 0x5DEE_CE66_D1CE_4E5B)
    let base = mixer.next()
    state = base &+ index &* 0xD1B5_4A32_D192_ED03
    _ = next()
  }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Uniform in `0..<bound` (multiply-shift; the bias, below 2^-32 for our bounds, does not matter).
  public mutating func below(_ bound: Int) -> Int {
    precondition(bound > 0)
    let product = (next() >> 32) &* UInt64(bound)
    return Int(product >> 32)
  }

  /// Uniform in `range` (inclusive).
  public mutating func int(in range: ClosedRange<Int>) -> Int {
    range.lowerBound + below(range.upperBound - range.lowerBound + 1)
  }

  /// Uniform in [0, 1), exactly representable.
  public mutating func unit() -> Double {
    Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
  }

  /// True with probability `p`.
  public mutating func chance(_ p: Double) -> Bool { unit() < p }

  /// One element of a non-empty array.
  public mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }

  /// Fisher–Yates shuffle.
  public mutating func shuffle<T>(_ items: inout [T]) {
    guard items.count > 1 else { return }
    for i in stride(from: items.count - 1, to: 0, by: -1) {
      items.swapAt(i, below(i + 1))
    }
  }
}
