/// The coupled-gate LSTM (input gate tied to the forget gate, i = 1 − f), gate rows f, g, o (G = 3),
/// SPEC §3:
///
///     f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
///     c_t = f ⊙ c_{t−1} + (1 − f) ⊙ g
///     h_t = o ⊙ tanh(c_t)
enum CoupledCell {
  /// `gates` [B, 3H]: pre-activations in, activations (f, g, o) out; writes `c`, `tanhC`, `h` [B, H].
  static func forward(
    gates: UnsafeMutablePointer<Float>, cPrev: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
    tanhC: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>, batch: Int, hidden H: Int
  ) {
    for b in 0..<batch {
      let row = gates + b * 3 * H
      let s = b * H
      for j in 0..<H {
        let f = Activation.sigmoid(row[j])
        let g = Activation.tanh(row[H + j])
        let o = Activation.sigmoid(row[2 * H + j])
        row[j] = f
        row[H + j] = g
        row[2 * H + j] = o
        let cNew = f * cPrev[s + j] + (1 - f) * g
        let tc = Activation.tanh(cNew)
        c[s + j] = cNew
        tanhC[s + j] = tc
        h[s + j] = o * tc
      }
    }
  }

  /// `dc` carries dL/dc_t in and dL/dc_{t−1} out; writes `dpre` [B, 3H].
  static func backward(
    dpre: UnsafeMutablePointer<Float>, dc: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>,
    gates: UnsafePointer<Float>, cPrev: UnsafePointer<Float>, tanhC: UnsafePointer<Float>,
    batch: Int, hidden H: Int
  ) {
    for b in 0..<batch {
      let row = gates + b * 3 * H
      let drow = dpre + b * 3 * H
      let s = b * H
      for j in 0..<H {
        let f = row[j]
        let g = row[H + j]
        let o = row[2 * H + j]
        let tc = tanhC[s + j]
        let dhj = dh[s + j]
        // h = o ⊙ tanh(c)
        let dO = dhj * tc
        let dcj = dc[s + j] + dhj * o * (1 - tc * tc)
        // c = f ⊙ c_prev + (1 − f) ⊙ g  ⇒  ∂c/∂f = c_prev − g, ∂c/∂g = 1 − f
        let dF = dcj * (cPrev[s + j] - g)
        let dG = dcj * (1 - f)
        dc[s + j] = dcj * f
        drow[j] = dF * f * (1 - f)
        drow[H + j] = dG * (1 - g * g)
        drow[2 * H + j] = dO * o * (1 - o)
      }
    }
  }
}
