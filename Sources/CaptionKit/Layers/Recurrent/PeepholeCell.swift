import CKernels

/// The peephole LSTM (Gers & Schmidhuber), gate rows i, f, g, o as the LSTM, plus `weight_peep`
/// [3, H] with rows p_i, p_f, p_o (SPEC §3):
///
///     i = σ(a_i + p_i ⊙ c_{t−1})     f = σ(a_f + p_f ⊙ c_{t−1})     g = tanh(a_g)
///     c_t = f ⊙ c_{t−1} + i ⊙ g
///     o = σ(a_o + p_o ⊙ c_t)         // the output gate sees the new cell
///     h_t = o ⊙ tanh(c_t)
enum PeepholeCell {
  /// As `LSTMCell.forward`, with the peephole weights `peep` [3, H] (vectorised C, peephole.c).
  static func forward(
    gates: UnsafeMutablePointer<Float>, peep: UnsafePointer<Float>, cPrev: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, tanhC: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
    batch: Int, hidden H: Int
  ) {
    ck_peephole_forward(gates, peep, cPrev, c, tanhC, h, Int32(batch), Int32(H))
  }

  /// As `LSTMCell.backward`; also accumulates the peephole gradient into `dpeep` [3, H].
  /// `c` [B, H] is c_t (the output gate's peephole input). The adjoint, per unit:
  ///
  ///     dA_o = dh ⊙ tanh(c) ⊙ o(1 − o)
  ///     dc  += dh ⊙ o ⊙ (1 − tanh²c) + dA_o ⊙ p_o
  ///     dA_i = dc ⊙ g ⊙ i(1 − i)    dA_f = dc ⊙ c_{t−1} ⊙ f(1 − f)    dA_g = dc ⊙ i ⊙ (1 − g²)
  ///     dc_{t−1} = dc ⊙ f + dA_i ⊙ p_i + dA_f ⊙ p_f
  ///     dp_i += dA_i ⊙ c_{t−1}    dp_f += dA_f ⊙ c_{t−1}    dp_o += dA_o ⊙ c_t
  static func backward(
    dpre: UnsafeMutablePointer<Float>, dc: UnsafeMutablePointer<Float>, dpeep: UnsafeMutablePointer<Float>,
    dh: UnsafePointer<Float>, gates: UnsafePointer<Float>, peep: UnsafePointer<Float>,
    cPrev: UnsafePointer<Float>, c: UnsafePointer<Float>, tanhC: UnsafePointer<Float>,
    batch: Int, hidden H: Int
  ) {
    ck_peephole_backward(dpre, dc, dpeep, dh, gates, peep, cPrev, c, tanhC, Int32(batch), Int32(H))
  }
}
