import Foundation

/// Pointwise nonlinearities of the recurrent cells, as tight loops over contiguous `Float`s.
/// (A later performance pass can swap these for libmvec-vectorised versions.)
enum Activation {
  /// σ(x) = 1 / (1 + e^(−x)).
  @inline(__always)
  static func sigmoid(_ x: Float) -> Float { 1 / (1 + Foundation.exp(-x)) }

  @inline(__always)
  static func tanh(_ x: Float) -> Float { Foundation.tanh(x) }
}
