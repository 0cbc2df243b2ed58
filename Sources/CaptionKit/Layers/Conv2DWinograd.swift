import CKernels
import Foundation

// Winograd F(2×2, 3×3) for Conv2D (3×3, stride 1, pad 1).
//
// Each output tile Y (2×2) comes from a 4×4 input patch d (rows 2ty−1…2ty+2, cols 2tx−1…2tx+2):
//   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A                                   (Lavin & Gray, 2015)
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
//   Aᵀ = [1 1 1 0; 0 1 −1 −1].
// Summed over input channels, the ⊙ becomes, for each of the 16 positions ξ of the 4×4 tile,
//   M[ξ] [Cout, T] = U[ξ] [Cout, Cin] · V[ξ] [Cin, T]      (16 GEMMs; T = tiles in the chunk)
// with U = G g Gᵀ and V = Bᵀ d B. Backward is the adjoint of each linear stage:
//   dM = A dY Aᵀ;  dU[ξ] += dM[ξ] · V[ξ]ᵀ;  dV[ξ] = U[ξ]ᵀ · dM[ξ];
//   dd = B dV Bᵀ (scatter-added: neighbouring patches overlap);  dg = Gᵀ dU G.
// Tensors: V [16, Cin, T] and M [16, Cout, T], tile t = g·tilesPerImage + ty·tilesW + tx.

extension Conv2D {
  /// The tile grid of an H×W map: ⌈H/2⌉ × ⌈W/2⌉ (odd sizes: the last tile is cropped).
  @inline(__always)
  static func tileGrid(height: Int, width: Int) -> (rows: Int, columns: Int) {
    ((height + 1) / 2, (width + 1) / 2)
  }

  /// Images per chunk so that V and M stay within `winogradBudget` floats each.
  func winogradChunkSize(batch: Int, tilesPerImage: Int) -> Int {
    let perImage = 16 * max(inChannels, outChannels) * tilesPerImage
    return max(1, min(batch, winogradBudget / max(perImage, 1)))
  }

  // MARK: forward

  func forwardWinograd(_ input: Tensor, _ output: Tensor) {
    let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
    let (tilesH, tilesW) = Conv2D.tileGrid(height: height, width: width)
    let tilesPerImage = tilesH * tilesW
    let group = winogradChunkSize(batch: batch, tilesPerImage: tilesPerImage)
    let (cin, cout) = (inChannels, outChannels)
    let pixels = height * width
    let threads = Parallel.threads
    let u = transformedWeights()
    let v = reuseWorkspace(&winogradV, shape: [16, cin, group * tilesPerImage])
    let m = reuseWorkspace(&winogradM, shape: [16, cout, group * tilesPerImage])
    let padded = reuseWorkspace(&paddedPlanes, shape: [threads, 2 * tilesH + 2, 2 * tilesW + 2])
    let biasPointer = bias.value.pointer
    let relu = self.relu

    var first = 0
    while first < batch {
      let count = min(group, batch - first)
      let t = count * tilesPerImage  // row stride of this chunk's V and M slabs
      // V = Bᵀ d B for every (image, channel) plane.
      transformInputChunk(input, first: first, count: count, v: v, padded: padded)
      // M[ξ] [Cout, t] = U[ξ] [Cout, Cin] · V[ξ] [Cin, t]
      for xi in 0..<16 {
        BLAS.gemm(
          transA: false, transB: false, m: cout, n: t, k: cin,
          a: u.pointer + xi * cout * cin, lda: cin, b: v.pointer + xi * cin * t, ldb: t,
          beta: 0, c: m.pointer + xi * cout * t, ldc: t)
      }
      // Y = Aᵀ M A, plus bias, ReLU, into NCHW.
      Parallel.ranges(count * cout, parts: threads) { _, planes in
        for plane in planes {
          let (g, co) = plane.quotientAndRemainder(dividingBy: cout)
          Conv2D.winogradOutput(
            m: m.pointer + co * t + g * tilesPerImage, slabStride: cout * t, bias: biasPointer[co],
            relu: relu, output: output.pointer + ((first + g) * cout + co) * pixels,
            height: height, width: width)
        }
      }
      first += count
    }
  }

  // MARK: backward

  func backwardWinograd(_ input: Tensor, _ output: Tensor, _ outputGrad: Tensor, _ inputGrad: Tensor?) {
    let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
    let (tilesH, tilesW) = Conv2D.tileGrid(height: height, width: width)
    let tilesPerImage = tilesH * tilesW
    let group = winogradChunkSize(batch: batch, tilesPerImage: tilesPerImage)
    let (cin, cout) = (inChannels, outChannels)
    let pixels = height * width
    let threads = Parallel.threads
    // U from the forward pass (the weights have not changed since).
    let u = reuseWorkspace(&winogradU, shape: [16, cout, cin])
    let uGrad = reuseWorkspace(&winogradUGrad, shape: [16, cout, cin])
    let v = reuseWorkspace(&winogradV, shape: [16, cin, group * tilesPerImage])
    let mGrad = reuseWorkspace(&winogradM, shape: [16, cout, group * tilesPerImage])
    let vGrad: Tensor? =
      inputGrad == nil ? nil : reuseWorkspace(&winogradVGrad, shape: [16, cin, group * tilesPerImage])
    let padded = reuseWorkspace(&paddedPlanes, shape: [threads, 2 * tilesH + 2, 2 * tilesW + 2])
    let paddedGrad = reuseWorkspace(&paddedGradPlanes, shape: [threads, 2 * tilesH + 2, 2 * tilesW + 2])
    let paddedSize = (2 * tilesH + 2) * (2 * tilesW + 2)
    let partials = reuseWorkspace(&biasPartials, shape: [threads, cout])
    partials.fill(0)
    let relu = self.relu

    var first = 0
    while first < batch {
      let count = min(group, batch - first)
      let t = count * tilesPerImage
      // dM = A dY Aᵀ from the ReLU-masked output gradient; per-thread bias sums.
      Parallel.ranges(count * cout, parts: threads) { part, planes in
        for plane in planes {
          let (g, co) = plane.quotientAndRemainder(dividingBy: cout)
          let offset = ((first + g) * cout + co) * pixels
          let sum = Conv2D.winogradOutputBackward(
            outputGrad: outputGrad.pointer + offset, output: relu ? output.pointer + offset : nil,
            height: height, width: width, mGrad: mGrad.pointer + co * t + g * tilesPerImage,
            slabStride: cout * t)
          partials.pointer[part * cout + co] += sum
        }
      }
      // V again (cheaper than keeping it for the whole batch).
      transformInputChunk(input, first: first, count: count, v: v, padded: padded)
      for xi in 0..<16 {
        // dU[ξ] [Cout, Cin] (+)= dM[ξ] [Cout, t] · V[ξ]ᵀ [t, Cin]
        BLAS.gemm(
          transA: false, transB: true, m: cout, n: cin, k: t,
          a: mGrad.pointer + xi * cout * t, lda: t, b: v.pointer + xi * cin * t, ldb: t,
          beta: first == 0 ? 0 : 1, c: uGrad.pointer + xi * cout * cin, ldc: cin)
      }
      if let inputGrad = inputGrad, let vGrad = vGrad {
        for xi in 0..<16 {
          // dV[ξ] [Cin, t] = U[ξ]ᵀ [Cin, Cout] · dM[ξ] [Cout, t]
          BLAS.gemm(
            transA: true, transB: false, m: cin, n: t, k: cout,
            a: u.pointer + xi * cout * cin, lda: cin, b: mGrad.pointer + xi * cout * t, ldb: t,
            beta: 0, c: vGrad.pointer + xi * cin * t, ldc: t)
        }
        // dd = B dV Bᵀ, overlapping patches summed, into each input plane.
        Parallel.ranges(count * cin, parts: threads) { part, planes in
          let scratch = paddedGrad.pointer + part * paddedSize
          for plane in planes {
            let (g, ci) = plane.quotientAndRemainder(dividingBy: cin)
            Conv2D.winogradInputBackward(
              vGrad: vGrad.pointer + ci * t + g * tilesPerImage, slabStride: cin * t,
              padded: scratch, inputGrad: inputGrad.pointer + ((first + g) * cin + ci) * pixels,
              height: height, width: width)
          }
        }
      }
      first += count
    }
    addWinogradGradients(uGrad: uGrad, biasPartials: partials, parts: threads)
  }

  /// V = Bᵀ d B for the `count` images from `first` on, every (image, channel) plane, into the
  /// chunk's slabs of `v` ([16, Cin, count·tiles]); `padded` holds one zero-bordered plane per thread.
  func transformInputChunk(_ input: Tensor, first: Int, count: Int, v: Tensor, padded: Tensor) {
    let (cin, height, width) = (inChannels, input.shape[2], input.shape[3])
    let (tilesH, tilesW) = Conv2D.tileGrid(height: height, width: width)
    let tilesPerImage = tilesH * tilesW
    let t = count * tilesPerImage
    let paddedSize = padded.shape[1] * padded.shape[2]
    Parallel.ranges(count * cin, parts: padded.shape[0]) { part, planes in
      let scratch = padded.pointer + part * paddedSize
      for plane in planes {
        let (g, ci) = plane.quotientAndRemainder(dividingBy: cin)
        Conv2D.winogradInput(
          plane: input.pointer + ((first + g) * cin + ci) * height * width, height: height, width: width,
          padded: scratch, v: v.pointer + ci * t + g * tilesPerImage, slabStride: cin * t)
      }
    }
  }

  /// weight.grad += Gᵀ dU G (dU [16, Cout, Cin]); bias.grad += the per-thread sums [parts, Cout].
  func addWinogradGradients(uGrad: Tensor, biasPartials: Tensor, parts: Int) {
    let cout = outChannels
    Conv2D.winogradWeightsBackward(
      uGrad: uGrad.pointer, outputChannels: cout, inputChannels: inChannels, weightGrad: weight.grad.pointer)
    for co in 0..<cout {
      var sum: Float = 0
      for part in 0..<parts { sum += biasPartials.pointer[part * cout + co] }
      bias.grad.pointer[co] += sum
    }
  }

  // MARK: transforms

  /// U [16, Cout, Cin] = G g Gᵀ for every kernel g = weight[co, ci] [3, 3] (CKernels), kept
  /// with a copy of the weights it came from: recomputed only when they differ (describe calls the
  /// encoder again and again with the same weights; training changes them every step, and the
  /// comparison stops at the first difference).
  func transformedWeights() -> Tensor {
    let (cout, cin) = (outChannels, inChannels)
    let count = weight.value.count
    if let u = winogradU, let source = winogradUSource, source.count == count,
      memcmp(source.pointer, weight.value.pointer, count * MemoryLayout<Float>.stride) == 0
    {
      return u
    }
    let u = reuseWorkspace(&winogradU, shape: [16, cout, cin])
    ck_winograd_weights(weight.value.pointer, Int32(cout * cin), u.pointer)
    let source = reuseWorkspace(&winogradUSource, shape: weight.value.shape)
    source.pointer.update(from: weight.value.pointer, count: count)
    return u
  }

  /// weightGrad [Cout, Cin, 3, 3] += Gᵀ dU G for every kernel (dU [16, Cout, Cin]).
  static func winogradWeightsBackward(
    uGrad: UnsafePointer<Float>, outputChannels: Int, inputChannels: Int,
    weightGrad: UnsafeMutablePointer<Float>
  ) {
    let slab = outputChannels * inputChannels
    for kernel in 0..<slab {
      // Column c of dU as a SIMD4 over its 4 rows.
      @inline(__always) func column(_ c: Int) -> SIMD4<Float> {
        SIMD4(
          uGrad[c * slab + kernel], uGrad[(4 + c) * slab + kernel], uGrad[(8 + c) * slab + kernel],
          uGrad[(12 + c) * slab + kernel])
      }
      let (d0, d1, d2, d3) = (column(0), column(1), column(2), column(3))
      // dU G (Gᵀ's adjoint along the columns): [d0 + ½(d1+d2), ½(d1−d2), ½(d1+d2) + d3].
      let e0 = d0 + 0.5 * (d1 + d2)
      let e1 = 0.5 * (d1 - d2)
      let e2 = 0.5 * (d1 + d2) + d3
      // Gᵀ (·) along the rows of each column vector e.
      let g = weightGrad + kernel * 9
      for (kx, e) in [(0, e0), (1, e1), (2, e2)] {
        g[0 * 3 + kx] += e[0] + 0.5 * (e[1] + e[2])
        g[1 * 3 + kx] += 0.5 * (e[1] - e[2])
        g[2 * 3 + kx] += 0.5 * (e[1] + e[2]) + e[3]
      }
    }
  }

  /// V[ξ, tile] = (Bᵀ d B)[ξ] for every tile of one plane [H, W]; `padded` is a zero-bordered
  /// scratch plane [2·tilesH + 2, 2·tilesW + 2] whose border is never written.
  static func winogradInput(
    plane: UnsafePointer<Float>, height: Int, width: Int, padded: UnsafeMutablePointer<Float>,
    v: UnsafeMutablePointer<Float>, slabStride s: Int
  ) {
    let (tilesH, tilesW) = tileGrid(height: height, width: width)
    let pw = 2 * tilesW + 2
    for y in 0..<height {
      (padded + (y + 1) * pw + 1).update(from: plane + y * width, count: width)
    }
    let vectorTiles = tilesW / 8 * 8
    for ty in 0..<tilesH {
      // 8 tiles at once: SIMD8 lanes are neighbouring tiles, columns 2tx + c deinterleaved.
      for tx in stride(from: 0, to: vectorTiles, by: 8) {
        let p = padded + 2 * ty * pw + 2 * tx
        @inline(__always) func columns(_ r: Int) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
          let a = loadDeinterleaved(p + r * pw)
          let b = loadDeinterleaved(p + r * pw + 2)
          return (a.even, a.odd, b.even, b.odd)
        }
        let (d0, d1, d2, d3) = (columns(0), columns(1), columns(2), columns(3))
        let target = v + ty * tilesW + tx
        // Bᵀ d (rows), then (·) B along each row, as in the scalar loop below.
        @inline(__always) func store(
          _ r: Int, _ x: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)
        ) {
          store8(x.0 - x.2, target + (4 * r + 0) * s)
          store8(x.1 + x.2, target + (4 * r + 1) * s)
          store8(x.2 - x.1, target + (4 * r + 2) * s)
          store8(x.1 - x.3, target + (4 * r + 3) * s)
        }
        store(0, (d0.0 - d2.0, d0.1 - d2.1, d0.2 - d2.2, d0.3 - d2.3))
        store(1, (d1.0 + d2.0, d1.1 + d2.1, d1.2 + d2.2, d1.3 + d2.3))
        store(2, (d2.0 - d1.0, d2.1 - d1.1, d2.2 - d1.2, d2.3 - d1.3))
        store(3, (d1.0 - d3.0, d1.1 - d3.1, d1.2 - d3.2, d1.3 - d3.3))
      }
      for tx in vectorTiles..<tilesW {
        let p = UnsafeRawPointer(padded + 2 * ty * pw + 2 * tx)
        let d0 = p.loadUnaligned(as: SIMD4<Float>.self)
        let d1 = p.loadUnaligned(fromByteOffset: 4 * pw, as: SIMD4<Float>.self)
        let d2 = p.loadUnaligned(fromByteOffset: 8 * pw, as: SIMD4<Float>.self)
        let d3 = p.loadUnaligned(fromByteOffset: 12 * pw, as: SIMD4<Float>.self)
        // Bᵀ d (rows): [d0 − d2, d1 + d2, d2 − d1, d1 − d3].
        let rows = (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
        let target = v + ty * tilesW + tx
        // (·) B along each row x: [x0 − x2, x1 + x2, x2 − x1, x1 − x3].
        @inline(__always) func store(_ r: Int, _ x: SIMD4<Float>) {
          target[(4 * r + 0) * s] = x[0] - x[2]
          target[(4 * r + 1) * s] = x[1] + x[2]
          target[(4 * r + 2) * s] = x[2] - x[1]
          target[(4 * r + 3) * s] = x[1] - x[3]
        }
        store(0, rows.0)
        store(1, rows.1)
        store(2, rows.2)
        store(3, rows.3)
      }
    }
  }

  /// One output plane [H, W] = Aᵀ M A per tile, + bias, then ReLU when asked.
  static func winogradOutput(
    m: UnsafePointer<Float>, slabStride s: Int, bias: Float, relu: Bool,
    output: UnsafeMutablePointer<Float>, height: Int, width: Int
  ) {
    let (tilesH, tilesW) = tileGrid(height: height, width: width)
    let floor: Float = relu ? 0 : -.infinity
    // Groups of 8 tiles whose 16 output columns all lie inside the plane.
    let vectorTiles = min(tilesW, width / 2) / 8 * 8
    for ty in 0..<tilesH {
      for tx in stride(from: 0, to: vectorTiles, by: 8) {
        let source = m + ty * tilesW + tx
        @inline(__always) func row(_ r: Int) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
          (
            load8(source + (4 * r) * s), load8(source + (4 * r + 1) * s),
            load8(source + (4 * r + 2) * s), load8(source + (4 * r + 3) * s)
          )
        }
        let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3))
        let s0 = (m0.0 + m1.0 + m2.0, m0.1 + m1.1 + m2.1, m0.2 + m1.2 + m2.2, m0.3 + m1.3 + m2.3)
        let s1 = (m1.0 - m2.0 - m3.0, m1.1 - m2.1 - m3.1, m1.2 - m2.2 - m3.2, m1.3 - m2.3 - m3.3)
        let biasVector = SIMD8<Float>(repeating: bias)
        let floorVector = SIMD8<Float>(repeating: floor)
        let top = output + 2 * ty * width + 2 * tx
        // Even output columns from the tiles' first column, odd ones from their second.
        storeInterleaved(
          pointwiseMax(s0.0 + s0.1 + s0.2 + biasVector, floorVector),
          pointwiseMax(s0.1 - s0.2 - s0.3 + biasVector, floorVector), top)
        if 2 * ty + 1 < height {
          storeInterleaved(
            pointwiseMax(s1.0 + s1.1 + s1.2 + biasVector, floorVector),
            pointwiseMax(s1.1 - s1.2 - s1.3 + biasVector, floorVector), top + width)
        }
      }
      for tx in vectorTiles..<tilesW {
        let source = m + ty * tilesW + tx
        @inline(__always) func row(_ r: Int) -> SIMD4<Float> {
          SIMD4(
            source[(4 * r) * s], source[(4 * r + 1) * s], source[(4 * r + 2) * s], source[(4 * r + 3) * s])
        }
        let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3))
        // Aᵀ M (rows): [m0 + m1 + m2, m1 − m2 − m3]; then (·) A along each row.
        let s0 = m0 + m1 + m2
        let s1 = m1 - m2 - m3
        let y = 2 * ty
        let x = 2 * tx
        let top = output + y * width + x
        top[0] = max(s0[0] + s0[1] + s0[2] + bias, floor)
        if x + 1 < width { top[1] = max(s0[1] - s0[2] - s0[3] + bias, floor) }
        if y + 1 < height {
          top[width] = max(s1[0] + s1[1] + s1[2] + bias, floor)
          if x + 1 < width { top[width + 1] = max(s1[1] - s1[2] - s1[3] + bias, floor) }
        }
      }
    }
  }

  /// dM = A dY Aᵀ per tile from one plane's output gradient, masked by the ReLU (`output` > 0)
  /// when `output` is given; returns the plane's sum of dY (the bias gradient's share).
  static func winogradOutputBackward(
    outputGrad: UnsafePointer<Float>, output: UnsafePointer<Float>?, height: Int, width: Int,
    mGrad: UnsafeMutablePointer<Float>, slabStride s: Int
  ) -> Float {
    let (tilesH, tilesW) = tileGrid(height: height, width: width)
    var sum: Float = 0
    @inline(__always) func grad(_ y: Int, _ x: Int) -> Float {
      if y >= height || x >= width { return 0 }
      let index = y * width + x
      if let output = output, !(output[index] > 0) { return 0 }
      return outputGrad[index]
    }
    let vectorTiles = min(tilesW, width / 2) / 8 * 8
    var vectorSum = SIMD8<Float>.zero
    for ty in 0..<tilesH {
      if 2 * ty + 1 < height {
        for tx in stride(from: 0, to: vectorTiles, by: 8) {
          let index = 2 * ty * width + 2 * tx
          let top = loadDeinterleaved(outputGrad + index)
          let bottom = loadDeinterleaved(outputGrad + index + width)
          var (e00, e01, e10, e11) = (top.even, top.odd, bottom.even, bottom.odd)
          if let output = output {
            let topOut = loadDeinterleaved(output + index)
            let bottomOut = loadDeinterleaved(output + index + width)
            e00.replace(with: 0, where: .!(topOut.even .> 0))
            e01.replace(with: 0, where: .!(topOut.odd .> 0))
            e10.replace(with: 0, where: .!(bottomOut.even .> 0))
            e11.replace(with: 0, where: .!(bottomOut.odd .> 0))
          }
          vectorSum += (e00 + e01) + (e10 + e11)
          let target = mGrad + ty * tilesW + tx
          @inline(__always) func store(_ r: Int, _ p: SIMD8<Float>, _ q: SIMD8<Float>) {
            store8(p, target + (4 * r + 0) * s)
            store8(p + q, target + (4 * r + 1) * s)
            store8(p - q, target + (4 * r + 2) * s)
            store8(-q, target + (4 * r + 3) * s)
          }
          store(0, e00, e01)
          store(1, e00 + e10, e01 + e11)
          store(2, e00 - e10, e01 - e11)
          store(3, -e10, -e11)
        }
      }
      for tx in (2 * ty + 1 < height ? vectorTiles : 0)..<tilesW {
        let (y, x) = (2 * ty, 2 * tx)
        let (e00, e01, e10, e11) = (grad(y, x), grad(y, x + 1), grad(y + 1, x), grad(y + 1, x + 1))
        sum += (e00 + e01) + (e10 + e11)
        // A dY (rows 0…3, as vectors over them): first column p, second q.
        let p = SIMD4(e00, e00 + e10, e00 - e10, -e10)
        let q = SIMD4(e01, e01 + e11, e01 - e11, -e11)
        // (·) Aᵀ along each row [p, q] → [p, p + q, p − q, −q].
        let columns = (p, p + q, p - q, -q)
        let target = mGrad + ty * tilesW + tx
        for r in 0..<4 {
          target[(4 * r + 0) * s] = columns.0[r]
          target[(4 * r + 1) * s] = columns.1[r]
          target[(4 * r + 2) * s] = columns.2[r]
          target[(4 * r + 3) * s] = columns.3[r]
        }
      }
    }
    return sum + vectorSum.sum()
  }

  /// One input plane's gradient [H, W] = Σ over tiles of B dV Bᵀ placed at the tile's patch;
  /// `padded` is scratch [2·tilesH + 2, 2·tilesW + 2].
  static func winogradInputBackward(
    vGrad: UnsafePointer<Float>, slabStride s: Int, padded: UnsafeMutablePointer<Float>,
    inputGrad: UnsafeMutablePointer<Float>, height: Int, width: Int
  ) {
    let (tilesH, tilesW) = tileGrid(height: height, width: width)
    let pw = 2 * tilesW + 2
    padded.update(repeating: 0, count: (2 * tilesH + 2) * pw)
    let vectorTiles = tilesW / 8 * 8
    for ty in 0..<tilesH {
      for tx in stride(from: 0, to: vectorTiles, by: 8) {
        let source = vGrad + ty * tilesW + tx
        @inline(__always) func row(_ a: Int) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
          (
            load8(source + (4 * a) * s), load8(source + (4 * a + 1) * s),
            load8(source + (4 * a + 2) * s), load8(source + (4 * a + 3) * s)
          )
        }
        let (w0, w1, w2, w3) = (row(0), row(1), row(2), row(3))
        // B dV (rows), as in the scalar loop below.
        let u1 = (w1.0 - w2.0 + w3.0, w1.1 - w2.1 + w3.1, w1.2 - w2.2 + w3.2, w1.3 - w2.3 + w3.3)
        let u2 = (w1.0 + w2.0 - w0.0, w1.1 + w2.1 - w0.1, w1.2 + w2.2 - w0.2, w1.3 + w2.3 - w0.3)
        let u3 = (-w3.0, -w3.1, -w3.2, -w3.3)
        // (·) Bᵀ along each row gives patch columns z0…z3 of the 8 tiles; columns 0, 1 of a tile
        // land at 2tx, 2tx + 1 and columns 2, 3 at 2tx + 2, 2tx + 3 (overlapping the next tile).
        @inline(__always) func add(_ r: Int, _ x: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)) {
          let p = padded + (2 * ty + r) * pw + 2 * tx
          let z0 = x.0
          let z1 = x.1 - x.2 + x.3
          let z2 = x.1 + x.2 - x.0
          let z3 = -x.3
          addInterleaved(z0, z1, p)
          addInterleaved(z2, z3, p + 2)
        }
        add(0, w0)
        add(1, u1)
        add(2, u2)
        add(3, u3)
      }
      for tx in vectorTiles..<tilesW {
        let source = vGrad + ty * tilesW + tx
        @inline(__always) func row(_ a: Int) -> SIMD4<Float> {
          SIMD4(
            source[(4 * a) * s], source[(4 * a + 1) * s], source[(4 * a + 2) * s], source[(4 * a + 3) * s])
        }
        let (w0, w1, w2, w3) = (row(0), row(1), row(2), row(3))
        // B dV (rows): [w0, w1 − w2 + w3, −w0 + w1 + w2, −w3].
        let rows = (w0, w1 - w2 + w3, w1 + w2 - w0, -w3)
        // (·) Bᵀ along each row x: [x0, x1 − x2 + x3, −x0 + x1 + x2, −x3].
        @inline(__always) func add(_ r: Int, _ x: SIMD4<Float>) {
          let p = UnsafeMutableRawPointer(padded + (2 * ty + r) * pw + 2 * tx)
          let old = p.loadUnaligned(as: SIMD4<Float>.self)
          p.storeBytes(
            of: old + SIMD4(x[0], x[1] - x[2] + x[3], x[1] + x[2] - x[0], -x[3]), as: SIMD4<Float>.self)
        }
        add(0, rows.0)
        add(1, rows.1)
        add(2, rows.2)
        add(3, rows.3)
      }
    }
    for y in 0..<height {
      (inputGrad + y * width).update(from: padded + (y + 1) * pw + 1, count: width)
    }
  }
}

// MARK: SIMD helpers (unaligned loads and stores)

@inline(__always)
private func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
  UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
private func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
  UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
}

@inline(__always)
private func store4(_ x: SIMD4<Float>, _ p: UnsafeMutablePointer<Float>) {
  UnsafeMutableRawPointer(p).storeBytes(of: x, as: SIMD4<Float>.self)
}

@inline(__always)
private func store8(_ x: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
  UnsafeMutableRawPointer(p).storeBytes(of: x, as: SIMD8<Float>.self)
}

// The (de)interleaving below is written on SIMD4 pieces, which the baseline x86-64 target maps to
// single SSE shuffles; the same on SIMD16 went element by element through the stack (measured:
// 12% of a training step in the output transform).

/// p[0], p[2], …, p[14] and p[1], p[3], …, p[15].
@inline(__always)
private func loadDeinterleaved(_ p: UnsafePointer<Float>) -> (even: SIMD8<Float>, odd: SIMD8<Float>) {
  let (x0, x1, x2, x3) = (load4(p), load4(p + 4), load4(p + 8), load4(p + 12))
  let evenLow = SIMD4(x0[0], x0[2], x1[0], x1[2])
  let evenHigh = SIMD4(x2[0], x2[2], x3[0], x3[2])
  let oddLow = SIMD4(x0[1], x0[3], x1[1], x1[3])
  let oddHigh = SIMD4(x2[1], x2[3], x3[1], x3[3])
  return (SIMD8(lowHalf: evenLow, highHalf: evenHigh), SIMD8(lowHalf: oddLow, highHalf: oddHigh))
}

/// p[0…15] = a0, b0, a1, b1, …, a7, b7.
@inline(__always)
private func storeInterleaved(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
  let (a0, a1, b0, b1) = (a.lowHalf, a.highHalf, b.lowHalf, b.highHalf)
  store4(SIMD4(a0[0], b0[0], a0[1], b0[1]), p)
  store4(SIMD4(a0[2], b0[2], a0[3], b0[3]), p + 4)
  store4(SIMD4(a1[0], b1[0], a1[1], b1[1]), p + 8)
  store4(SIMD4(a1[2], b1[2], a1[3], b1[3]), p + 12)
}

/// p[0…15] += a0, b0, a1, b1, …, a7, b7.
@inline(__always)
private func addInterleaved(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
  let (a0, a1, b0, b1) = (a.lowHalf, a.highHalf, b.lowHalf, b.highHalf)
  store4(load4(p) + SIMD4(a0[0], b0[0], a0[1], b0[1]), p)
  store4(load4(p + 4) + SIMD4(a0[2], b0[2], a0[3], b0[3]), p + 4)
  store4(load4(p + 8) + SIMD4(a1[0], b1[0], a1[1], b1[1]), p + 8)
  store4(load4(p + 12) + SIMD4(a1[2], b1[2], a1[3], b1[3]), p + 12)
}
