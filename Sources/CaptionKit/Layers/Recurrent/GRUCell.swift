/// The GRU (PyTorch's `nn.GRU`, gate rows r, z, n), SPEC §3. The input side `ax` and the recurrent
/// side `ah` are kept apart because r multiplies only the recurrent part of n:
///
///     ax = W_ih x_t + b_ih + W_iv v          // [B, 3H]: the image term joins the input side
///     ah = W_hh h_{t−1} + b_hh               // [B, 3H]
///     r = σ(ax_r + ah_r)    z = σ(ax_z + ah_z)
///     n = tanh(ax_n + r ⊙ ah_n)
///     h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
enum GRUCell {
  /// `gates` [B, 3H]: `ax` in, activations (r, z, n) out. `ah` [B, 3H] is read (its n block is kept for
  /// backward). `hPrev` [B, H]; writes `h` [B, H].
  static func forward(
    gates: UnsafeMutablePointer<Float>, ah: UnsafePointer<Float>, hPrev: UnsafePointer<Float>,
    h: UnsafeMutablePointer<Float>, batch: Int, hidden H: Int
  ) {
    for b in 0..<batch {
      let row = gates + b * 3 * H
      let hrow = ah + b * 3 * H
      let s = b * H
      for j in 0..<H {
        let r = Activation.sigmoid(row[j] + hrow[j])
        let z = Activation.sigmoid(row[H + j] + hrow[H + j])
        let n = Activation.tanh(row[2 * H + j] + r * hrow[2 * H + j])
        row[j] = r
        row[H + j] = z
        row[2 * H + j] = n
        h[s + j] = (1 - z) * n + z * hPrev[s + j]
      }
    }
  }

  /// Backprop through one step. Writes `dax` [B, 3H] (gradient on the input-side pre-activations, which
  /// is also the image term's) and `dah` [B, 3H] (on the recurrent side: equal for r and z, r ⊙ da_n for
  /// n), and sets `dhPrev` [B, H] to the direct path z ⊙ dh (the path through W_hh is added by the layer).
  static func backward(
    dax: UnsafeMutablePointer<Float>, dah: UnsafeMutablePointer<Float>, dhPrev: UnsafeMutablePointer<Float>,
    dh: UnsafePointer<Float>, gates: UnsafePointer<Float>, ah: UnsafePointer<Float>,
    hPrev: UnsafePointer<Float>, batch: Int, hidden H: Int
  ) {
    for b in 0..<batch {
      let row = gates + b * 3 * H
      let hrow = ah + b * 3 * H
      let dxrow = dax + b * 3 * H
      let dhrow = dah + b * 3 * H
      let s = b * H
      for j in 0..<H {
        let r = row[j]
        let z = row[H + j]
        let n = row[2 * H + j]
        let dhj = dh[s + j]
        // h = (1 − z) ⊙ n + z ⊙ h_prev
        let dN = dhj * (1 - z)
        let dZ = dhj * (hPrev[s + j] - n)
        dhPrev[s + j] = dhj * z
        // n = tanh(ax_n + r ⊙ ah_n)
        let dAn = dN * (1 - n * n)
        let dR = dAn * hrow[2 * H + j]
        let dAr = dR * r * (1 - r)
        let dAz = dZ * z * (1 - z)
        dxrow[j] = dAr
        dxrow[H + j] = dAz
        dxrow[2 * H + j] = dAn
        dhrow[j] = dAr
        dhrow[H + j] = dAz
        dhrow[2 * H + j] = dAn * r
      }
    }
  }
}
