import CKernels

/// The LSTM cell (PyTorch's `nn.LSTM`, gate rows i, f, g, o), SPEC §3:
///
///     a = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh + W_iv v      // [B, 4H], blocks a_i a_f a_g a_o
///     i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
///     c_t = f ⊙ c_{t−1} + i ⊙ g
///     h_t = o ⊙ tanh(c_t)
///
/// The layer computes `a`; the cell turns it into gate activations (in place) and the new state.
enum LSTMCell {
  /// `gates` [B, 4H]: pre-activations in, activations (i, f, g, o) out. `cPrev` [B, H];
  /// writes `c` [B, H], `tanhC` = tanh(c) [B, H] (kept for backward) and `h` [B, H].
  static func forward(
    gates: UnsafeMutablePointer<Float>, cPrev: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
    tanhC: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>, batch: Int, hidden H: Int
  ) {
    // vectorised C: σ and tanh through a polynomial e^x (relative error < 2.5e-7)
    ck_lstm_forward(gates, cPrev, c, tanhC, h, Int32(batch), Int32(H))
  }

  /// Backprop through one step. `dh` [B, H] is the total gradient on h_t; `dc` [B, H] holds the
  /// gradient on c_t arriving from step t+1 and is overwritten with the gradient on c_{t−1}.
  /// Writes `dpre` [B, 4H], the gradient on the pre-activations a.
  static func backward(
    dpre: UnsafeMutablePointer<Float>, dc: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>,
    gates: UnsafePointer<Float>, cPrev: UnsafePointer<Float>, tanhC: UnsafePointer<Float>,
    batch: Int, hidden H: Int
  ) {
    ck_lstm_backward(dpre, dc, dh, gates, cPrev, tanhC, Int32(batch), Int32(H))
  }
}
