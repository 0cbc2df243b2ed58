/// The peephole LSTM (Gers & Schmidhuber), gate rows i, f, g, o as the LSTM, plus `weight_peep`
/// [3, H] with rows p_i, p_f, p_o (SPEC §3):
///
///     i = σ(a_i + p_i ⊙ c_{t−1})     f = σ(a_f + p_f ⊙ c_{t−1})     g = tanh(a_g)
///     c_t = f ⊙ c_{t−1} + i ⊙ g
///     o = σ(a_o + p_o ⊙ c_t)         // the output gate sees the new cell
///     h_t = o ⊙ tanh(c_t)
enum PeepholeCell {
  /// As `LSTMCell.forward`, with the peephole weights `peep` [3, H].
  static func forward(
    gates: UnsafeMutablePointer<Float>, peep: UnsafePointer<Float>, cPrev: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, tanhC: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
    batch: Int, hidden H: Int
  ) {
    for b in 0..<batch {
      let row = gates + b * 4 * H
      let s = b * H
      for j in 0..<H {
        let cp = cPrev[s + j]
        let i = Activation.sigmoid(row[j] + peep[j] * cp)
        let f = Activation.sigmoid(row[H + j] + peep[H + j] * cp)
        let g = Activation.tanh(row[2 * H + j])
        let cNew = f * cp + i * g
        let o = Activation.sigmoid(row[3 * H + j] + peep[2 * H + j] * cNew)
        row[j] = i
        row[H + j] = f
        row[2 * H + j] = g
        row[3 * H + j] = o
        let tc = Activation.tanh(cNew)
        c[s + j] = cNew
        tanhC[s + j] = tc
        h[s + j] = o * tc
      }
    }
  }

  /// As `LSTMCell.backward`; also accumulates the peephole gradient into `dpeep` [3, H].
  /// `c` [B, H] is c_t (the output gate's peephole input).
  static func backward(
    dpre: UnsafeMutablePointer<Float>, dc: UnsafeMutablePointer<Float>, dpeep: UnsafeMutablePointer<Float>,
    dh: UnsafePointer<Float>, gates: UnsafePointer<Float>, peep: UnsafePointer<Float>,
    cPrev: UnsafePointer<Float>, c: UnsafePointer<Float>, tanhC: UnsafePointer<Float>,
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
        let cp = cPrev[s + j]
        let dhj = dh[s + j]
        // h = o ⊙ tanh(c); o = σ(a_o + p_o ⊙ c) also depends on c
        let dAo = dhj * tc * o * (1 - o)
        let dcj = dc[s + j] + dhj * o * (1 - tc * tc) + dAo * peep[2 * H + j]
        // c = f ⊙ c_prev + i ⊙ g
        let dAi = dcj * g * i * (1 - i)
        let dAf = dcj * cp * f * (1 - f)
        let dAg = dcj * i * (1 - g * g)
        // c_prev reaches c directly and through the i and f peepholes
        dc[s + j] = dcj * f + dAi * peep[j] + dAf * peep[H + j]
        dpeep[j] += dAi * cp
        dpeep[H + j] += dAf * cp
        dpeep[2 * H + j] += dAo * c[s + j]
        drow[j] = dAi
        drow[H + j] = dAf
        drow[2 * H + j] = dAg
        drow[3 * H + j] = dAo
      }
    }
  }
}
