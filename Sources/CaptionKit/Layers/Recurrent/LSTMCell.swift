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
    for b in 0..<batch {
      let row = gates + b * 4 * H
      let s = b * H
      for j in 0..<H {
        let i = Activation.sigmoid(row[j])
        let f = Activation.sigmoid(row[H + j])
        let g = Activation.tanh(row[2 * H + j])
        let o = Activation.sigmoid(row[3 * H + j])
        row[j] = i
        row[H + j] = f
        row[2 * H + j] = g
        row[3 * H + j] = o
        let cNew = f * cPrev[s + j] + i * g
        let tc = Activation.tanh(cNew)
        c[s + j] = cNew
        tanhC[s + j] = tc
        h[s + j] = o * tc
      }
    }
  }

  /// Backprop through one step. `dh` [B, H] is the total gradient on h_t; `dc` [B, H] holds the
  /// gradient on c_t arriving from step t+1 and is overwritten with the gradient on c_{t−1}.
  /// Writes `dpre` [B, 4H], the gradient on the pre-activations a.
  static func backward(
    dpre: UnsafeMutablePointer<Float>, dc: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>,
    gates: UnsafePointer<Float>, cPrev: UnsafePointer<Float>, tanhC: UnsafePointer<Float>,
    batch: Int, hidden H: Int
  ) {
    for b in 0..<batch {
      let row = gates + b * 4 * H
      let drow = dpre + b * 4 * H
      let s = b * H
      for j in 0..<H {
        let i = row[j]
        let f = row[H + j]
        let g = row[2 * H + j]
        let o = row[3 * H + j]
        let tc = tanhC[s + j]
        let dhj = dh[s + j]
        // h = o ⊙ tanh(c): backprop into o and into c
        let dO = dhj * tc
        let dcj = dc[s + j] + dhj * o * (1 - tc * tc)
        // c = f ⊙ c_prev + i ⊙ g
        let dI = dcj * g
        let dF = dcj * cPrev[s + j]
        let dG = dcj * i
        dc[s + j] = dcj * f
        // through the nonlinearities: σ′ = σ(1 − σ), tanh′ = 1 − tanh²
        drow[j] = dI * i * (1 - i)
        drow[H + j] = dF * f * (1 - f)
        drow[2 * H + j] = dG * (1 - g * g)
        drow[3 * H + j] = dO * o * (1 - o)
      }
    }
  }
}
