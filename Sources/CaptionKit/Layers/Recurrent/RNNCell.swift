/// The plain (Elman) RNN cell, SPEC §1:
///
///     s_t = tanh(W_ih x_t + W_hh s_{t−1} + W_iv v + b_ih + b_hh)
///
/// One gate block (G = 1). The layer fills `pre` with the whole pre-activation; the cell applies
/// the nonlinearity and, backwards, its derivative.
enum RNNCell {
  /// `gates` [B, H]: pre-activations in, tanh out; `h` [B, H] gets a copy (the new state).
  static func forward(gates: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>, count: Int) {
    for k in 0..<count {
      let s = Activation.tanh(gates[k])
      gates[k] = s
      h[k] = s
    }
  }

  /// dpre = dh ⊙ (1 − h²)   (tanh′ = 1 − tanh²). `dh`, `h`, `dpre` are [B, H].
  static func backward(
    dpre: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>, h: UnsafePointer<Float>, count: Int
  ) {
    for k in 0..<count { dpre[k] = dh[k] * (1 - h[k] * h[k]) }
  }
}
