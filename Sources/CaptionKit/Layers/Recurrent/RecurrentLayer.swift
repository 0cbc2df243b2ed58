/// One recurrent layer of any `CellType` over a whole padded batch of sequences, with BPTT.
///
/// Every cell's gate pre-activations are (SPEC §1, §3)
///
///     a_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh + [image step] W_iv v        // [B, G·H]
///
/// (the GRU keeps `W_hh h + b_hh` apart, see `GRUCell`). The work is batched:
/// - the input projections of all T steps are one GEMM, X [T·B, In] × W_ihᵀ;
/// - `W_iv v` [B, G·H] is computed once per sequence and added at every step (`every`) or only at the
///   first step the layer processes (`first`; the biases stay at every step);
/// - per step, one GEMM adds W_hh h_{t−1} (W_hh packed once for all steps, see `Gemm`);
/// - backward, dW_ih, dW_hh and dX are one GEMM each over all steps, dW_iv and dv one GEMM each from
///   the gate gradients summed over the image steps.
/// Workspaces are sized once per (T, B) and reused; nothing is allocated per step.
///
/// `reverse` runs backward in time (the second direction of a bidirectional layer): step order
/// T−1, …, 0, the state after time t feeding time t−1. With `lengths`, row b's positions t ≥ lengths[b]
/// are padding: the state there is forced to zero (so the reverse direction starts at each sequence's
/// last real token, and the output at padding is zero in either direction).
///
/// The tensors `forward` returns and `backward` returns are this layer's workspaces: valid until the
/// next call. The input and image given to `forward` must stay unchanged until `backward`.
public final class RecurrentLayer {
  public let cell: CellType
  public let inputSize: Int
  public let hiddenSize: Int
  public let imageSize: Int
  public let imageInput: ImageInput
  public let reverse: Bool

  public let weightIH: Parameter  // [G·H, In]
  public let weightHH: Parameter  // [G·H, H]
  public let weightIV: Parameter  // [G·H, Dv]
  public let biasIH: Parameter  // [G·H]
  public let biasHH: Parameter  // [G·H]
  public let weightPeep: Parameter?  // [3, H], peephole only: rows i, f, o

  /// Gate rows G·H.
  var gateWidth: Int { cell.gates * hiddenSize }
  var hasCellState: Bool { cell == .lstm || cell == .peephole || cell == .coupled }

  // MARK: Workspaces, sized for (steps, batch)
  private var steps = -1
  private var batch = -1
  private var gates = Tensor(zeros: [0])  // [T, B, G·H] pre-activations, then activations
  private var recurrent = Tensor(zeros: [0])  // [T, B, 3H] GRU only: W_hh h_{t−1} + b_hh
  private var hs = Tensor(zeros: [0])  // [T+1, B, H] states, with the zero initial state at one end
  private var cs = Tensor(zeros: [0])  // [T+1, B, H] cell states (LSTM variants)
  private var tanhC = Tensor(zeros: [0])  // [T, B, H] tanh(c_t) (LSTM variants)
  private var imageProjection = Tensor(zeros: [0])  // [B, G·H] W_iv v + the biases
  private var rowBias = Tensor(zeros: [0])  // [G·H] b_ih (+ b_hh)
  private var output = Tensor(zeros: [0])  // [T, B, H] a view into hs
  private var dpre = Tensor(zeros: [0])  // [T, B, G·H] gradient on the (input-side) pre-activations
  private var drecurrent = Tensor(zeros: [0])  // [T, B, 3H] GRU only: gradient on W_hh h + b_hh
  private var dInput = Tensor(zeros: [0])  // [T, B, In]
  private var dImage = Tensor(zeros: [0])  // [B, Dv]
  private var dImageGates = Tensor(zeros: [0])  // [B, G·H] gate gradients summed over image steps
  private var dBiasSum = Tensor(zeros: [0])  // [G·H] gate gradients summed over steps and rows
  private var dh = Tensor(zeros: [0])  // [B, H] total gradient on h_t
  private var dhNext = Tensor(zeros: [0])  // [B, H] gradient on h_t from step t's successor
  private var dc = Tensor(zeros: [0])  // [B, H] gradient on c_t, then c_{t−1}
  /// Per row, the time step whose pre-activations get W_iv v under `first` (−1: none).
  private var imageStep: [Int] = []
  /// Per row, its length (`steps` when no lengths were given).
  private var lengths: [Int] = []
  private var masked = false
  private var savedInput: Tensor?
  private var savedImage: Tensor?
  private let packed = PackedMatrix()  // the right operand of the product being computed
  /// W_hh packed for the per-step products (packed once per pass): W_hhᵀ forward, W_hh backward.
  private let packedRecurrent = PackedMatrix()

  public init(
    cell: CellType, inputSize: Int, hiddenSize: Int, imageSize: Int, imageInput: ImageInput,
    reverse: Bool = false
  ) {
    precondition(inputSize > 0 && hiddenSize > 0 && imageSize > 0, "RecurrentLayer: sizes must be positive")
    self.cell = cell
    self.inputSize = inputSize
    self.hiddenSize = hiddenSize
    self.imageSize = imageSize
    self.imageInput = imageInput
    self.reverse = reverse
    let gh = cell.gates * hiddenSize
    weightIH = Parameter(name: "weight_ih", shape: [gh, inputSize])
    weightHH = Parameter(name: "weight_hh", shape: [gh, hiddenSize])
    weightIV = Parameter(name: "weight_iv", shape: [gh, imageSize])
    biasIH = Parameter(name: "bias_ih", shape: [gh])
    biasHH = Parameter(name: "bias_hh", shape: [gh])
    weightPeep = cell == .peephole ? Parameter(name: "weight_peep", shape: [3, hiddenSize]) : nil
  }

  /// The parameters under their SPEC §3 names, relative to the layer (`weight_ih`, …, `weight_peep`).
  public var namedParameters: [(String, Parameter)] {
    var list = [weightIH, weightHH, weightIV, biasIH, biasHH].map { ($0.name, $0) }
    if let weightPeep { list.append((weightPeep.name, weightPeep)) }
    return list
  }

  /// PyTorch-style: every weight and bias U(−1/√H, 1/√H), `weight_peep` included. LSTM variants
  /// (lstm, peephole, coupled): the forget-gate rows of `bias_ih` are 1 and those of `bias_hh` 0,
  /// so the forget gate starts at σ(1 + …).
  public func initialize(using generator: inout some RandomNumberGenerator) {
    let bound = 1 / Float(hiddenSize).squareRoot()
    for (_, parameter) in namedParameters {
      let values = parameter.value
      for k in 0..<values.count { values[k] = Float.random(in: -bound...bound, using: &generator) }
    }
    if let forgetBlock = forgetGateBlock {
      let H = hiddenSize
      for j in 0..<H {
        biasIH.value[forgetBlock * H + j] = 1
        biasHH.value[forgetBlock * H + j] = 0
      }
    }
  }

  /// The index of the forget-gate block in the gate rows (LSTM i,f,g,o → 1; coupled f,g,o → 0).
  var forgetGateBlock: Int? {
    switch cell {
    case .lstm, .peephole: return 1
    case .coupled: return 0
    case .rnn, .gru: return nil
    }
  }

  private func reserve(steps T: Int, batch B: Int) {
    if T == steps && B == batch { return }
    steps = T
    batch = B
    let H = hiddenSize
    let gh = gateWidth
    gates = Tensor(zeros: [T, B, gh])
    recurrent = Tensor(zeros: cell == .gru ? [T, B, gh] : [0])
    hs = Tensor(zeros: [T + 1, B, H])
    cs = Tensor(zeros: hasCellState ? [T + 1, B, H] : [0])
    tanhC = Tensor(zeros: hasCellState ? [T, B, H] : [0])
    imageProjection = Tensor(zeros: [B, gh])
    rowBias = Tensor(zeros: [gh])
    output = hs.view(offset: reverse ? 0 : B * H, shape: [T, B, H])
    dpre = Tensor(zeros: [T, B, gh])
    drecurrent = Tensor(zeros: cell == .gru ? [T, B, gh] : [0])
    dInput = Tensor(zeros: [T, B, inputSize])
    dImage = Tensor(zeros: [B, imageSize])
    dImageGates = Tensor(zeros: [B, gh])
    dBiasSum = Tensor(zeros: [gh])
    dh = Tensor(zeros: [B, H])
    dhNext = Tensor(zeros: [B, H])
    dc = Tensor(zeros: [B, H])
    lengths = Array(repeating: T, count: B)
    imageStep = Array(repeating: 0, count: B)
  }

  /// rowBias = b_ih + b_hh (b_ih alone for the GRU): the input-side bias of every step.
  private func fillRowBias() {
    let bias = rowBias.pointer
    let bih = biasIH.value.pointer
    let bhh = biasHH.value.pointer
    for k in 0..<gateWidth { bias[k] = cell == .gru ? bih[k] : bih[k] + bhh[k] }
  }

  /// Index into `hs`/`cs` of the state before time t, and of the state after it.
  @inline(__always) private func stateIndices(_ t: Int) -> (previous: Int, current: Int) {
    reverse ? (t + 1, t) : (t, t + 1)
  }

  /// Runs the layer over `input` [T, B, In] with image vectors `image` [B, Dv]; returns h_t for every
  /// t, [T, B, H]. `lengths` (one per row, each in 0...T) marks padding as described above.
  public func forward(input: Tensor, image: Tensor, lengths: [Int]? = nil) -> Tensor {
    precondition(
      input.shape.count == 3 && input.shape[2] == inputSize, "RecurrentLayer: input \(input.shape)")
    let T = input.shape[0]
    let B = input.shape[1]
    precondition(
      image.shape == [B, imageSize], "RecurrentLayer: image \(image.shape), expected [\(B), \(imageSize)]")
    reserve(steps: T, batch: B)
    savedInput = input
    savedImage = image
    let H = hiddenSize
    let gh = gateWidth
    precondition(
      lengths == nil || lengths!.count == B, "RecurrentLayer: \(lengths!.count) lengths for \(B) rows")
    masked = false
    for b in 0..<B {
      let length = lengths?[b] ?? T
      precondition(length >= 0 && length <= T, "RecurrentLayer: length \(length) outside 0...\(T)")
      self.lengths[b] = length
      masked = masked || length < T
      imageStep[b] = length == 0 ? -1 : (reverse ? length - 1 : 0)
    }

    // a starts as the biases b_ih (+ b_hh, except for the GRU, whose recurrent side is kept apart)
    // plus, at the image steps, W_iv v (computed once per sequence: [B, Dv] × [Dv, G·H])
    let g = gates.pointer
    let bias = rowBias.pointer
    fillRowBias()
    let ip = imageProjection.pointer
    Gemm.multiply(
      transA: false, transB: true, m: B, n: gh, k: imageSize, a: image.pointer, lda: imageSize,
      b: weightIV.value.pointer, ldb: imageSize, accumulate: false, c: ip, ldc: gh, workspace: packed)
    for b in 0..<B {
      let row = ip + b * gh
      for k in 0..<gh { row[k] += bias[k] }
    }
    for t in 0..<T {
      for b in 0..<B {
        let withImage = imageInput == .every || t == imageStep[b]
        (g + (t * B + b) * gh).update(from: withImage ? ip + b * gh : bias, count: gh)
      }
    }
    // a += X W_ihᵀ for all steps at once: [T·B, In] × [In, G·H]
    Gemm.multiply(
      transA: false, transB: true, m: T * B, n: gh, k: inputSize, a: input.pointer, lda: inputSize,
      b: weightIH.value.pointer, ldb: inputSize, accumulate: true, c: g, ldc: gh, workspace: packed)

    // the recurrence, h_0 = c_0 = 0
    if T > 1 { packedRecurrent.pack(b: weightHH.value.pointer, ldb: H, transB: true, k: H, n: gh) }
    let initial = reverse ? T : 0
    (hs.pointer + initial * B * H).update(repeating: 0, count: B * H)
    if hasCellState { (cs.pointer + initial * B * H).update(repeating: 0, count: B * H) }
    for k in 0..<T {
      let t = reverse ? T - 1 - k : k
      let (previous, current) = stateIndices(t)
      let gt = g + t * B * gh
      let hPrev = hs.pointer + previous * B * H
      let hCur = hs.pointer + current * B * H
      if cell == .gru {
        // ah = W_hh h_{t−1} + b_hh
        let ah = recurrent.pointer + t * B * gh
        for b in 0..<B { (ah + b * gh).update(from: biasHH.value.pointer, count: gh) }
        if k > 0 {
          Gemm.multiply(
            transA: false, m: B, a: hPrev, lda: H, packed: packedRecurrent, accumulate: true, c: ah, ldc: gh)
        }
        GRUCell.forward(gates: gt, ah: ah, hPrev: hPrev, h: hCur, batch: B, hidden: H)
      } else {
        // a += W_hh h_{t−1} (zero at the first step)
        if k > 0 {
          Gemm.multiply(
            transA: false, m: B, a: hPrev, lda: H, packed: packedRecurrent, accumulate: true, c: gt, ldc: gh)
        }
        let cPrev = cs.pointer + previous * B * H
        let cCur = cs.pointer + current * B * H
        let tc = tanhC.pointer + t * B * H
        switch cell {
        case .rnn: RNNCell.forward(gates: gt, h: hCur, count: B * H)
        case .lstm:
          LSTMCell.forward(gates: gt, cPrev: cPrev, c: cCur, tanhC: tc, h: hCur, batch: B, hidden: H)
        case .peephole:
          PeepholeCell.forward(
            gates: gt, peep: weightPeep!.value.pointer, cPrev: cPrev, c: cCur, tanhC: tc, h: hCur,
            batch: B, hidden: H)
        case .coupled:
          CoupledCell.forward(gates: gt, cPrev: cPrev, c: cCur, tanhC: tc, h: hCur, batch: B, hidden: H)
        case .gru: break
        }
      }
      if masked {
        // padding: the state after a pad position is zero
        for b in 0..<B where t >= self.lengths[b] {
          (hCur + b * H).update(repeating: 0, count: H)
          if hasCellState { (cs.pointer + current * B * H + b * H).update(repeating: 0, count: H) }
        }
      }
    }
    return output
  }

  /// Backpropagation through time from `outputGrad` [T, B, H] (the loss gradient on every h_t).
  /// Accumulates the parameter gradients; returns the gradients on the input [T, B, In] and on the
  /// image vectors [B, Dv] (this layer's workspaces).
  public func backward(outputGrad: Tensor) -> (inputGrad: Tensor, imageGrad: Tensor) {
    guard let input = savedInput, let image = savedImage else {
      preconditionFailure("RecurrentLayer.backward before forward")
    }
    let T = steps
    let B = batch
    let H = hiddenSize
    let gh = gateWidth
    precondition(outputGrad.shape == [T, B, H], "RecurrentLayer: output grad \(outputGrad.shape)")
    let g = gates.pointer
    let dp = dpre.pointer
    let dhp = dh.pointer
    let dnext = dhNext.pointer
    dnext.update(repeating: 0, count: B * H)
    dc.fill(0)
    if T > 1 { packedRecurrent.pack(b: weightHH.value.pointer, ldb: H, transB: false, k: gh, n: H) }
    for k in stride(from: T - 1, through: 0, by: -1) {
      let t = reverse ? T - 1 - k : k
      let (previous, current) = stateIndices(t)
      // dh = dL/dh_t from the output plus from the step that read h_t
      let dout = outputGrad.pointer + t * B * H
      for e in 0..<(B * H) { dhp[e] = dout[e] + dnext[e] }
      if masked {
        // padding: h_t and c_t were forced to zero, nothing flows through them
        for b in 0..<B where t >= lengths[b] {
          (dhp + b * H).update(repeating: 0, count: H)
          if hasCellState { (dc.pointer + b * H).update(repeating: 0, count: H) }
        }
      }
      let gt = g + t * B * gh
      let dpt = dp + t * B * gh
      let hPrev = hs.pointer + previous * B * H
      if cell == .gru {
        let dat = drecurrent.pointer + t * B * gh
        // sets dhNext to the direct path z ⊙ dh
        GRUCell.backward(
          dax: dpt, dah: dat, dhPrev: dnext, dh: dhp, gates: gt, ah: recurrent.pointer + t * B * gh,
          hPrev: hPrev, batch: B, hidden: H)
        if k > 0 {
          // dh_{t−1} += dah W_hh
          Gemm.multiply(
            transA: false, m: B, a: dat, lda: gh, packed: packedRecurrent, accumulate: true, c: dnext, ldc: H)
        }
      } else {
        let cPrev = cs.pointer + previous * B * H
        let tc = tanhC.pointer + t * B * H
        switch cell {
        case .rnn: RNNCell.backward(dpre: dpt, dh: dhp, h: gt, count: B * H)
        case .lstm:
          LSTMCell.backward(
            dpre: dpt, dc: dc.pointer, dh: dhp, gates: gt, cPrev: cPrev, tanhC: tc, batch: B, hidden: H)
        case .peephole:
          PeepholeCell.backward(
            dpre: dpt, dc: dc.pointer, dpeep: weightPeep!.grad.pointer, dh: dhp, gates: gt,
            peep: weightPeep!.value.pointer, cPrev: cPrev, c: cs.pointer + current * B * H, tanhC: tc,
            batch: B, hidden: H)
        case .coupled:
          CoupledCell.backward(
            dpre: dpt, dc: dc.pointer, dh: dhp, gates: gt, cPrev: cPrev, tanhC: tc, batch: B, hidden: H)
        case .gru: break
        }
        if k > 0 {
          // dh_{t−1} = da W_hh
          Gemm.multiply(
            transA: false, m: B, a: dpt, lda: gh, packed: packedRecurrent, accumulate: false, c: dnext, ldc: H
          )
        }
      }
    }

    // dW_ih += daᵀ X, dX = da W_ih, over all T·B rows at once
    Gemm.multiply(
      transA: true, transB: false, m: gh, n: inputSize, k: T * B, a: dp, lda: gh, b: input.pointer,
      ldb: inputSize, accumulate: true, c: weightIH.grad.pointer, ldc: inputSize, workspace: packed)
    Gemm.multiply(
      transA: false, transB: false, m: T * B, n: inputSize, k: gh, a: dp, lda: gh,
      b: weightIH.value.pointer, ldb: inputSize, accumulate: false, c: dInput.pointer, ldc: inputSize,
      workspace: packed)
    // dW_hh += d(recurrent side)ᵀ H_prev, where H_prev [T, B, H] are the states each step read
    let drec = cell == .gru ? drecurrent.pointer : dp
    let hPrevAll = hs.pointer + (reverse ? B * H : 0)
    Gemm.multiply(
      transA: true, transB: false, m: gh, n: H, k: T * B, a: drec, lda: gh, b: hPrevAll, ldb: H,
      accumulate: true, c: weightHH.grad.pointer, ldc: H, workspace: packed)
    // S[b] = Σ_t da[t, b] [B, G·H]: the image term's gate gradient under `every`; and
    // db_ih = Σ_b S[b], db_hh = the same for the recurrent side (da itself but for the GRU)
    let dig = dImageGates.pointer
    let biasSum = dBiasSum.pointer
    Elementwise.sumSlices(dp, slices: T, length: B * gh, into: dig)
    Elementwise.sumSlices(dig, slices: B, length: gh, into: biasSum)
    Elementwise.add(biasSum, into: biasIH.grad.pointer, count: gh)
    if cell == .gru {
      Elementwise.sumSlices(drec, slices: T * B, length: gh, into: biasSum)
    }
    Elementwise.add(biasSum, into: biasHH.grad.pointer, count: gh)
    if imageInput == .first {
      // the image term was added at one step per row (none for an empty row)
      for b in 0..<B {
        let target = dig + b * gh
        if imageStep[b] >= 0 {
          target.update(from: dp + (imageStep[b] * B + b) * gh, count: gh)
        } else {
          target.update(repeating: 0, count: gh)
        }
      }
    }
    // dW_iv += dgᵀ V, dv = dg W_iv
    Gemm.multiply(
      transA: true, transB: false, m: gh, n: imageSize, k: B, a: dig, lda: gh, b: image.pointer,
      ldb: imageSize, accumulate: true, c: weightIV.grad.pointer, ldc: imageSize, workspace: packed)
    Gemm.multiply(
      transA: false, transB: false, m: B, n: imageSize, k: gh, a: dig, lda: gh, b: weightIV.value.pointer,
      ldb: imageSize, accumulate: false, c: dImage.pointer, ldc: imageSize, workspace: packed)
    return (dInput, dImage)
  }

  // MARK: One step for inference

  /// Scratch of `step`, sized for R rows.
  final class StepWorkspace {
    let rows: Int
    let gates: Tensor  // [R, G·H]
    let recurrent: Tensor  // [R, G·H] (GRU)
    let tanhC: Tensor  // [R, H]
    init(rows: Int, gateWidth: Int, hidden: Int) {
      self.rows = rows
      gates = Tensor(zeros: [rows, gateWidth])
      recurrent = Tensor(zeros: [rows, gateWidth])
      tanhC = Tensor(zeros: [rows, hidden])
    }
  }

  /// W_iv v for R rows of image vectors `image` [R, Dv], into `projection` [R, G·H].
  func projectImage(_ image: Tensor, into projection: Tensor) {
    BLAS.linear(
      m: image.shape[0], n: gateWidth, k: imageSize, x: image.pointer, ldx: imageSize,
      weight: weightIV.value.pointer, ldw: imageSize, y: projection.pointer, ldy: gateWidth)
  }

  /// c [R, n] += a [R, k] · Wᵀ for W [n, k] (few rows: CKernels' small-row kernel, see SmallGemm).
  @inline(__always)
  private func addProduct(
    rows R: Int, _ a: UnsafePointer<Float>, width k: Int, weight: UnsafePointer<Float>, outputs n: Int,
    into c: UnsafeMutablePointer<Float>
  ) {
    BLAS.linear(m: R, n: n, k: k, x: a, ldx: k, weight: weight, ldw: k, beta: 1, y: c, ldy: n)
  }

  /// The input's part of the gates for R rows of `input` [R, In], into `terms` [R, G·H]: the biases
  /// that `step` adds with it (b_ih, and b_hh but for the GRU) plus x W_ihᵀ. A model whose weights
  /// are fixed keeps each token's (TokenInputTerms) and hands it to `step` as `inputTerms`.
  func inputTerms(rows R: Int, input: UnsafePointer<Float>, into terms: UnsafeMutablePointer<Float>) {
    let gh = gateWidth
    let (bih, bhh) = (biasIH.value.pointer, biasHH.value.pointer)
    for r in 0..<R {
      let a = terms + r * gh
      for k in 0..<gh { a[k] = cell == .gru ? bih[k] : bih[k] + bhh[k] }
    }
    addProduct(rows: R, input, width: inputSize, weight: weightIH.value.pointer, outputs: gh, into: terms)
  }

  /// One time step for R rows, the same arithmetic as `forward`: reads `input` [R, In] and the state
  /// `h` (and `c`) [R, H], updates the state in place. Adds `imageProjection` [R, G·H] when given.
  /// With `inputTerms` [R, G·H] (`inputTerms(rows:input:into:)` of this step's input, computed
  /// earlier) it adds those instead of reading `input`.
  /// `fromZeroState`: h (and c) are zero, the state before the first step, so W_hh h (4 MB of
  /// weights at the bench's sizes) is skipped, as `forward` skips it at its first step.
  func step(
    input: UnsafePointer<Float>, inputTerms: UnsafePointer<Float>? = nil,
    imageProjection: UnsafePointer<Float>?, h: Tensor, c: Tensor?, fromZeroState: Bool = false,
    workspace: StepWorkspace
  ) {
    let R = workspace.rows
    let H = hiddenSize
    let gh = gateWidth
    let g = workspace.gates.pointer
    let bhh = biasHH.value.pointer
    // a = (biases + x W_ihᵀ) + W_iv v: the input terms given or computed here, then the image term
    if let inputTerms {
      g.update(from: inputTerms, count: R * gh)
    } else {
      self.inputTerms(rows: R, input: input, into: g)
    }
    if let imageProjection {
      for e in 0..<(R * gh) { g[e] += imageProjection[e] }
    }
    let hp = h.pointer
    if cell == .gru {
      let ah = workspace.recurrent.pointer
      for r in 0..<R { (ah + r * gh).update(from: bhh, count: gh) }
      if !fromZeroState {
        addProduct(rows: R, hp, width: H, weight: weightHH.value.pointer, outputs: gh, into: ah)
      }
      // in place: each element of h is read before it is written
      GRUCell.forward(gates: g, ah: ah, hPrev: hp, h: hp, batch: R, hidden: H)
      return
    }
    if !fromZeroState {
      addProduct(rows: R, hp, width: H, weight: weightHH.value.pointer, outputs: gh, into: g)
    }
    let tc = workspace.tanhC.pointer
    switch cell {
    case .rnn: RNNCell.forward(gates: g, h: hp, count: R * H)
    case .lstm:
      LSTMCell.forward(gates: g, cPrev: c!.pointer, c: c!.pointer, tanhC: tc, h: hp, batch: R, hidden: H)
    case .peephole:
      PeepholeCell.forward(
        gates: g, peep: weightPeep!.value.pointer, cPrev: c!.pointer, c: c!.pointer, tanhC: tc, h: hp,
        batch: R, hidden: H)
    case .coupled:
      CoupledCell.forward(gates: g, cPrev: c!.pointer, c: c!.pointer, tanhC: tc, h: hp, batch: R, hidden: H)
    case .gru: break
    }
  }
}
