import FoundationEssentials
import Glibc

/// The project's seeded random number generator: SplitMix64 (Steele, Lea & Flood 2014).
///
/// One 64-bit word of state, public so training can save it and `--resume` can restore it exactly.
/// Fast, passes BigCrush, and every seed (even 0) gives a good stream. Every seeded stream of the
/// project (initialisation, dropout, the loader's order, sampling, the shapes dataset, the
/// benchmarks) draws from it, so a seed gives the same numbers on every machine and Swift version.
public struct SeededGenerator: RandomNumberGenerator, Sendable, Equatable {
  public var state: UInt64

  public init(seed: UInt64) { state = seed }

  /// A stream keyed by several words (the loader's (seed, epoch, batch)): starting from the golden
  /// ratio, each word is xored in and the result put through one SplitMix64 step.
  public init(mixing words: UInt64...) {
    state = 0x9E37_79B9_7F4A_7C15
    for word in words {
      var step = SeededGenerator(seed: state ^ word)
      state = step.next()
    }
  }

  @inline(__always)
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Uniform in 0..<n (n ≥ 1): the high word of next()·n (multiply-shift, no modulo; the bias,
  /// below n/2^64, does not matter).
  public mutating func below(_ n: Int) -> Int {
    precondition(n > 0)
    return Int(next().multipliedFullWidth(by: UInt64(n)).high)
  }

  /// Uniform in 0..<n (1 ≤ n < 2^32) from the top 32 bits of one draw: (next() >> 32)·n >> 32 (bias
  /// below n/2^32). The shapes dataset draws with it: its files for a seed depend on this arithmetic.
  public mutating func below32(_ n: Int) -> Int {
    precondition(n > 0 && n < 1 << 32)
    return Int(((next() >> 32) &* UInt64(n)) >> 32)
  }

  /// Uniform in [0, 1) with 53 random bits, exactly representable.
  public mutating func nextUnitDouble() -> Double {
    Double(next() >> 11) * 0x1p-53
  }
}

extension RandomNumberGenerator {
  /// A uniform Float in [0, 1) with 24 random bits.
  @inline(__always)
  public mutating func nextUnitFloat() -> Float {
    Float(next() >> 40) * (1.0 / 16_777_216.0)
  }

  /// A standard normal sample (Box–Muller; one of the pair is discarded to keep no hidden state).
  public mutating func nextNormal() -> Float {
    // u1 in (0, 1] so log(u1) is finite.
    let u1 = Double((next() >> 11) + 1) * (1.0 / 9_007_199_254_740_992.0)
    let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
  }
}
