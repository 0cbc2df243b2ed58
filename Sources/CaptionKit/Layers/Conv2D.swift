/// 3×3 convolution, stride 1, padding 1 (SPEC §3), optionally followed by a fused ReLU (and, through
/// the F(4×4) kernels, by a fused 2×2 max-pool: `forward(_:pool:)`).
///
/// weight [Cout, Cin, 3, 3], bias [Cout]; input [B, Cin, H, W] → output [B, Cout, H, W].
/// Computed as im2col + one GEMM (`Gemm`) per chunk of images:
///   col [K = Cin·9, G·H·W]  (row k = (ci, ky, kx), column = g·HW + y·W + x)
///   out [Cout, G·HW] = weight [Cout, K] · col
/// A chunk holds as many images as fit in `columnBudget` floats, so late layers with small maps
/// still get wide GEMMs, and early layers do not need a huge column buffer. A layer of at most
/// `directForwardMaxChannels` input channels (the first: RGB) computes its forward directly
/// instead, and without an input gradient its weight gradient too (Conv2DBlocked.swift).
///
/// Layers with at least `winogradMinChannels` input channels use Winograd instead
/// (Conv2DWinograd.swift): F(4×4, 3×3), 4× fewer multiplies, on maps of at least 12 px, and
/// F(2×2, 3×3), 2.25× fewer, on smaller ones, in both passes, through CKernels' cache-blocked C
/// kernels (AVX-512, AVX2 or baseline, picked at run time; Conv2DBlocked.swift), at any batch
/// size: one image (describe) too, since the kernels share out an image's tile rows or output
/// channels (measured at the bench shapes, 2 threads: describe's encoder 2.0 ms with F(2×2), 4.1
/// ms with im2col). Every path is tested against a Double-precision reference (ConvKernelTests).
public final class Conv2D {
  public enum Algorithm: Sendable {
    case im2col
    case winograd
  }
  /// Below this many input channels the Winograd products are too thin (K = Cin) to pay off.
  public static let winogradMinChannels = 8
  /// The algorithm used by forward and backward (the same for both).
  public var algorithm: Algorithm
  public let inChannels: Int
  public let outChannels: Int
  /// Whether a ReLU follows inside this layer (SPEC §3: every encoder conv is followed by one).
  public let relu: Bool
  public let weight: Parameter  // [Cout, Cin, 3, 3]
  public let bias: Parameter  // [Cout]
  public var parameters: [Parameter] { [weight, bias] }

  /// Upper bound on the floats in the column buffer (and the chunk's GEMM output): 1 M = 4 MB,
  /// at least one image per chunk. Measured at the bench config (1 thread, CPU time of all convs'
  /// forward + backward): 0.25–1 M ≈ 400–410 ms, 2 M 446 ms, 8 M ~500 ms (cache misses).
  public var columnBudget = 1 << 20
  /// The blocked kernels' bound on the floats of one block's V and M together (per thread).
  public var blockedBudget = 1 << 18
  /// The least tiles of a blocked kernel's block. Each block's products read all of U (16·Cout·Cin
  /// floats: 16 MB at 512 channels) and, backward, read and add to the thread's dU as much again,
  /// so a block must hold enough tiles to pay for that traffic, even when its V and M then
  /// outgrow the cache. VGG-16 at 224 px, training batch 8, 2 threads, AVX-512 (Zen 4): a step
  /// takes 3.07 s at blocks of one tile row (14 tiles at 28 px), 2.62 s at 64 tiles, 2.50 s at 128,
  /// 2.58 s at 256.
  public var blockedMinTiles = 128
  /// Whether the weights will not change again (a model loaded to caption, not to train): the
  /// Winograd transform U is then computed once and kept, where otherwise each forward computes it
  /// again (training changes the weights every step).
  public var weightsAreFixed = false {
    didSet { transforms = [:] }
  }
  /// The Winograd tile of every pass when set (tests); otherwise `winogradTile(height:width:)`
  /// chooses.
  public var forcedTile: Int?
  /// Whether the F(4×4) backward of few tiles a thread shares out input channels when set (tests);
  /// otherwise it does (`backwardSharingChannels`, Conv2DBlocked.swift).
  public var forcedChannelShare: Bool?
  /// Up to this many input channels, an im2col layer's backward without an input gradient (the
  /// first layer's) computes the weight gradient directly (Conv2DBlocked.swift): im2col's product
  /// has only Cin·9 = 27 columns there.
  public var directWeightGradMaxChannels = 4
  /// Up to this many input channels, an im2col layer's forward is computed directly instead
  /// (Conv2DBlocked.swift): the first layer's product has only Cin·9 = 27 terms. VGG-16's first
  /// layer at 224 px, one image, 2 threads (Zen 4): 2.2 ms through im2col at AVX-512, 3.8 ms at AVX2.
  public var directForwardMaxChannels = 4

  /// Whether a 2×2 max-pool after this layer may run inside its kernels (`fusesPool`); tests turn
  /// it off to compare the two.
  public var poolFusion = true

  private var input: Tensor?  // [B, Cin, H, W], kept for backward
  /// [B, Cout, H, W] (or, pooled, [B, Cout, H/2, W/2]): the last forward's output, kept for backward
  private var output: Tensor?
  /// Whether the last forward fused the max-pool after it (`forward(_:pool:)`).
  var pooled = false
  private var outputWorkspace: Tensor?  // what `forward(_:)` writes into
  var reluMaskWorkspace: Tensor?  // the ReLU's mask in bits (Conv2DBlocked.swift: reluMask)
  var reluMaskIsCurrent = false  // whether the last forward wrote it (F(4×4), direct)
  /// The last forward's output (tests read the ReLU pattern from it).
  var lastOutput: Tensor? { output }
  private var inputGrad: Tensor?  // [B, Cin, H, W]
  private let packed = PackedMatrix()  // the right operand of the product being computed (Gemm)
  /// Working memory, shared with the other convolutions of an encoder (`Encoder` hands them one).
  public var scratch = ConvScratch()
  /// The Winograd transforms U by tile (Conv2DWinograd.swift): the last forward's, which its
  /// backward reads; with fixed weights, computed once.
  var transforms: [Int: Tensor] = [:]
  /// Where a new U is kept, when set (`Encoder.fixWeights`); otherwise in a tensor of its own.
  var transformStorage: TensorArena?

  public init(inChannels: Int, outChannels: Int, relu: Bool = true) {
    precondition(inChannels > 0 && outChannels > 0, "Conv2D: channel counts must be positive")
    self.inChannels = inChannels
    self.outChannels = outChannels
    self.relu = relu
    algorithm = inChannels >= Conv2D.winogradMinChannels ? .winograd : .im2col
    weight = Parameter(name: "weight", shape: [outChannels, inChannels, 3, 3])
    bias = Parameter(name: "bias", shape: [outChannels])
  }

  /// Kaiming-normal weights (fan_in = Cin·9, gain √2, std = √(2/fan_in)), zero bias.
  public func initialize(using generator: inout SeededGenerator) {
    Initialization.kaimingNormal(weight.value, fanIn: inChannels * 9, using: &generator)
    bias.value.fill(0)
  }

  /// Images per chunk for a map of `pixels` = H·W.
  private func chunkSize(batch: Int, pixels: Int) -> Int {
    let perImage = max(inChannels * 9, outChannels) * pixels
    return max(1, min(batch, columnBudget / max(perImage, 1)))
  }

  // MARK: forward

  /// Whether a 2×2 max-pool after this layer can run inside its kernels on an H×W map
  /// (`forward(_:pool:)`): F(4×4) Winograd with the ReLU, H and W even. The output transform then
  /// writes the pooled map instead of the 4× larger one (and the max-pool's pass over it is gone),
  /// and the backward reads the pooled map's gradient instead of one the max-pool spread out.
  public func fusesPool(height: Int, width: Int) -> Bool {
    poolFusion && relu && algorithm == .winograd
      && Conv2D.poolFitsTiles(winogradTile(height: height, width: width), height: height, width: width)
  }

  /// `fusesPool` of a layer with the ReLU and every setting at its default (what an encoder's
  /// layer of `inChannels` input channels does), for estimates made before any layer exists.
  static func fusesPoolByDefault(inChannels: Int, height: Int, width: Int) -> Bool {
    inChannels >= winogradMinChannels
      && poolFitsTiles(defaultTile(height: height, width: width), height: height, width: width)
  }

  /// Whether the F(4×4) kernels can pool an H×W map of Winograd `tile` inside: tile 4 (each 2×2
  /// window lies in one 4×4 output tile), H and W even.
  static func poolFitsTiles(_ tile: Int, height: Int, width: Int) -> Bool {
    tile == 4 && height % 2 == 0 && width % 2 == 0
  }

  /// The output's shape for an input of `inputShape` [B, Cin, H, W]: [B, Cout, H, W], or with
  /// `pool` [B, Cout, H/2, W/2].
  func outputShape(_ inputShape: [Int], pool: Bool) -> [Int] {
    let scale = pool ? 2 : 1
    return [inputShape[0], outChannels, inputShape[2] / scale, inputShape[3] / scale]
  }

  /// input [B, Cin, H, W] → output [B, Cout, H, W] (this layer's workspace, kept for backward);
  /// with `pool` (only where `fusesPool`), the output of this layer and a 2×2 max-pool after it,
  /// [B, Cout, H/2, W/2], equal to MaxPool2D's of the unpooled output, and `backward` then takes
  /// its gradient.
  public func forward(_ input: Tensor, pool: Bool = false) -> Tensor {
    precondition(
      input.shape.count == 4 && input.shape[1] == inChannels,
      "Conv2D: input \(input.shape), expected [B, \(inChannels), H, W]")
    let output = reuseWorkspace(&outputWorkspace, shape: outputShape(input.shape, pool: pool))
    forward(input, into: output, pool: pool, forBackward: true)
    return output
  }

  /// As `forward(_:pool:)`, writing into `output` (which must not overlap `input`), a buffer the
  /// caller owns: the encoder's inference passes share two buffers among all layers. No backward
  /// follows such a pass (the next layers overwrite what it would read), so it writes no ReLU mask
  /// (`reluMask`): VGG-16's 224-px layer of 64 channels, 1.9% fewer instructions with its max-pool.
  public func forward(_ input: Tensor, into output: Tensor, pool: Bool = false) {
    forward(input, into: output, pool: pool, forBackward: false)
  }

  /// The forward into `output`; `forBackward`: a backward may follow, which reads the ReLU mask.
  func forward(_ input: Tensor, into output: Tensor, pool: Bool, forBackward: Bool) {
    precondition(
      input.shape.count == 4 && input.shape[1] == inChannels,
      "Conv2D: input \(input.shape), expected [B, \(inChannels), H, W]")
    precondition(
      output.shape == outputShape(input.shape, pool: pool),
      "Conv2D: output \(output.shape) for input \(input.shape)")
    precondition(
      !pool || fusesPool(height: input.shape[2], width: input.shape[3]),
      "Conv2D: no fused max-pool on \(input.shape)")
    self.input = input
    self.output = output
    pooled = pool
    reluMaskIsCurrent = false
    if algorithm == .winograd {
      forwardBlocked(input, output, keepsMask: forBackward)
      return
    }
    if inChannels <= directForwardMaxChannels {
      forwardDirect(input, output, keepsMask: forBackward)
      return
    }
    let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
    let pixels = height * width
    let k = inChannels * 9
    let group = chunkSize(batch: batch, pixels: pixels)
    let columns = scratch.buffer(.columns, shape: [k, group * pixels])
    let chunkOutput = scratch.buffer(.chunk, shape: [outChannels, group * pixels])
    let outputSize = outChannels * pixels

    var first = 0
    while first < batch {
      let count = min(group, batch - first)
      let ldc = count * pixels  // row stride of col and chunk output for this chunk
      im2colChunk(input, first: first, count: count, columns: columns)
      // chunk [Cout, count·HW] = weight [Cout, K] · col [K, count·HW]. A one-image chunk already has
      // the NCHW layout of that image, so the GEMM writes straight into the output.
      let chunk = count == 1 ? output.pointer + first * outputSize : chunkOutput.pointer
      Gemm.multiply(
        transA: false, transB: false, m: outChannels, n: ldc, k: k,
        a: weight.value.pointer, lda: k, b: columns.pointer, ldb: ldc,
        accumulate: false, c: chunk, ldc: ldc, workspace: packed)
      // To NCHW, adding the bias and applying the ReLU; one (image, channel) plane per item.
      Parallel.forRanges(count * outChannels) { items in
        for item in items {
          let (g, co) = item.quotientAndRemainder(dividingBy: outChannels)
          Elementwise.addBias(
            chunk + co * ldc + g * pixels, bias.value.pointer[co], relu: relu,
            into: output.pointer + (first + g) * outputSize + co * pixels, count: pixels)
        }
      }
      first += count
    }
  }

  // MARK: backward

  /// Accumulates dL/dweight and dL/dbias; returns dL/dinput [B, Cin, H, W] when `needInputGrad`.
  /// With the fused ReLU, the gradient is masked where the output is 0 (dReLU(0) = 0). After a
  /// forward with `pool`, `outputGrad` is the pooled map's [B, Cout, H/2, W/2], each value going
  /// to its window's largest output (the first of equal ones, as MaxPool2D).
  @discardableResult
  public func backward(_ outputGrad: Tensor, needInputGrad: Bool = true) -> Tensor? {
    guard let input = input, let output = output else {
      preconditionFailure("Conv2D.backward before forward")
    }
    precondition(outputGrad.shape == output.shape, "Conv2D.backward: \(outputGrad.shape) vs \(output.shape)")
    if algorithm == .winograd {
      let inputGrad: Tensor? =
        needInputGrad ? reuseWorkspace(&self.inputGrad, shape: input.shape) : nil
      backwardBlocked(input, output, outputGrad, inputGrad)
      return inputGrad
    }
    if !needInputGrad && inChannels <= directWeightGradMaxChannels {
      backwardWeightsDirect(input, output, outputGrad)
      return nil
    }
    let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
    let pixels = height * width
    let k = inChannels * 9
    let group = chunkSize(batch: batch, pixels: pixels)
    let columns = scratch.buffer(.columns, shape: [k, group * pixels])
    let chunkGrad = scratch.buffer(.chunk, shape: [outChannels, group * pixels])
    let inputGrad: Tensor? =
      needInputGrad ? reuseWorkspace(&self.inputGrad, shape: input.shape) : nil
    let imageSize = inChannels * pixels
    let outputSize = outChannels * pixels

    var first = 0
    while first < batch {
      let count = min(group, batch - first)
      let ldc = count * pixels
      // Gather dL/d(pre-activation) into [Cout, count·HW]; accumulate dbias.
      Parallel.forRanges(count * outChannels) { items in
        for item in items {
          let (g, co) = item.quotientAndRemainder(dividingBy: outChannels)
          let offset = (first + g) * outputSize + co * pixels
          let target = chunkGrad.pointer + co * ldc + g * pixels
          if relu {
            Elementwise.copyWherePositive(
              outputGrad.pointer + offset, mask: output.pointer + offset, into: target, count: pixels)
          } else {
            target.update(from: outputGrad.pointer + offset, count: pixels)
          }
        }
      }
      Parallel.forRanges(outChannels) { channels in
        for co in channels {
          bias.grad.pointer[co] += Float(Elementwise.sum(chunkGrad.pointer + co * ldc, count: ldc))
        }
      }
      // The columns again (cheaper than keeping them for the whole batch).
      im2colChunk(input, first: first, count: count, columns: columns)
      // dweight [Cout, K] += dchunk [Cout, count·HW] · colᵀ [count·HW, K]
      Gemm.multiply(
        transA: false, transB: true, m: outChannels, n: k, k: ldc,
        a: chunkGrad.pointer, lda: ldc, b: columns.pointer, ldb: ldc,
        accumulate: true, c: weight.grad.pointer, ldc: k, workspace: packed)
      if let inputGrad = inputGrad {
        // dcol [K, count·HW] = weightᵀ [K, Cout] · dchunk [Cout, count·HW], then col2im.
        Gemm.multiply(
          transA: true, transB: false, m: k, n: ldc, k: outChannels,
          a: weight.value.pointer, lda: k, b: chunkGrad.pointer, ldb: ldc,
          accumulate: false, c: columns.pointer, ldc: ldc, workspace: packed)
        Parallel.forRanges(count * inChannels) { items in
          for item in items {
            let (g, c) = item.quotientAndRemainder(dividingBy: inChannels)
            let plane = inputGrad.pointer + (first + g) * imageSize + c * pixels
            plane.update(repeating: 0, count: pixels)
            Conv2D.col2im(
              columns: columns.pointer + c * 9 * ldc + g * pixels, rowStride: ldc, height: height,
              width: width, planeGrad: plane)
          }
        }
      }
      first += count
    }
    return inputGrad
  }

  // MARK: im2col / col2im (3×3, pad 1)

  /// Columns for images first..<first+count of `input`: one (image, channel) block of 9 rows per item.
  private func im2colChunk(_ input: Tensor, first: Int, count: Int, columns: Tensor) {
    let (height, width) = (input.shape[2], input.shape[3])
    let pixels = height * width
    let ldc = count * pixels
    let channels = inChannels
    Parallel.forRanges(count * channels) { items in
      for item in items {
        let (g, c) = item.quotientAndRemainder(dividingBy: channels)
        Conv2D.im2col(
          plane: input.pointer + ((first + g) * channels + c) * pixels, height: height, width: width,
          columns: columns.pointer + c * 9 * ldc + g * pixels, rowStride: ldc)
      }
    }
  }

  /// The 9 rows of one channel: col[ky·3 + kx, y·W + x] = plane[y + ky − 1, x + kx − 1] (0 outside).
  static func im2col(
    plane: UnsafePointer<Float>, height: Int, width: Int, columns: UnsafeMutablePointer<Float>,
    rowStride: Int
  ) {
    for ky in 0..<3 {
      for kx in 0..<3 {
        let row = columns + (ky * 3 + kx) * rowStride
        let dx = kx - 1
        // Valid x range: 0 ≤ x + dx < W.
        let x0 = max(0, -dx)
        let x1 = min(width, width - dx)
        for y in 0..<height {
          let iy = y + ky - 1
          let target = row + y * width
          if iy < 0 || iy >= height || x1 <= x0 {
            target.update(repeating: 0, count: width)
            continue
          }
          if x0 > 0 { target[0] = 0 }
          if x1 < width { target[width - 1] = 0 }
          (target + x0).update(from: plane + iy * width + x0 + dx, count: x1 - x0)
        }
      }
    }
  }

  /// The adjoint of im2col for one channel: planeGrad[y + ky − 1, x + kx − 1] += col[ky·3 + kx, y·W + x].
  static func col2im(
    columns: UnsafePointer<Float>, rowStride: Int, height: Int, width: Int,
    planeGrad: UnsafeMutablePointer<Float>
  ) {
    for ky in 0..<3 {
      for kx in 0..<3 {
        let row = columns + (ky * 3 + kx) * rowStride
        let dx = kx - 1
        let x0 = max(0, -dx)
        let x1 = min(width, width - dx)
        if x1 <= x0 { continue }
        for y in 0..<height {
          let iy = y + ky - 1
          if iy < 0 || iy >= height { continue }
          let source = row + y * width
          let target = planeGrad + iy * width + dx
          for x in x0..<x1 { target[x] += source[x] }
        }
      }
    }
  }
}
