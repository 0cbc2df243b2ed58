/// The shapes dataset's draws, on the project's generator, so a seed renders the same bytes on every
/// machine and every Swift version: no Foundation or standard-library randomness, and only integer
/// arithmetic to draw numbers (doubles come from the top 53 bits, exactly).
extension SeededGenerator {
  /// An independent stream for item `index` of a dataset seeded `seed` (images render in any order).
  static func shapes(seed: UInt64, stream index: UInt64) -> SeededGenerator {
    var mixer = SeededGenerator(seed: seed ^ 0x5DEE_CE66_D1CE_4E5B)
    var random = SeededGenerator(seed: mixer.next() &+ index &* 0xD1B5_4A32_D192_ED03)
    _ = random.next()
    return random
  }

  /// Uniform in `range` (inclusive).
  mutating func int(in range: ClosedRange<Int>) -> Int {
    range.lowerBound + below32(range.upperBound - range.lowerBound + 1)
  }

  /// True with probability `p`.
  mutating func chance(_ p: Double) -> Bool { nextUnitDouble() < p }

  /// One element of a non-empty array.
  mutating func pick<T>(_ items: [T]) -> T { items[below32(items.count)] }

  /// Fisher–Yates shuffle.
  mutating func shuffle<T>(_ items: inout [T]) {
    guard items.count > 1 else { return }
    for i in stride(from: items.count - 1, to: 0, by: -1) {
      items.swapAt(i, below32(i + 1))
    }
  }
}
