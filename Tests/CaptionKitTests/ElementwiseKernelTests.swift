import CKernels
import Foundation
import XCTest

@testable import CaptionKit

/// The vectorised C kernels of a training step besides the convolutions (adam.c, gemm.c, lstm.c,
/// softmax.c) against straightforward references, under every instruction set the CPU has:
/// Adam bit for bit against its scalar Float formula; the products within 1e-5, the LSTM cell
/// within 4e-6 and the softmax
/// within 1e-6 relative L2 error of Double-precision loops (their e^x is a polynomial, relative
/// error < 2.5e-7; tanh x = 1 − 2/(e^(2x) + 1) loses up to ~1.6e-6 relative just above |x| = 1/8).
final class ElementwiseKernelTests: XCTestCase {
  /// Runs `body` once per instruction-set level the CPU supports, restoring the best after.
  private func forEveryInstructionSet(_ body: () -> Void) {
    defer { ck_set_isa(-1) }
    for isa in 0...ck_isa() {
      ck_set_isa(Int32(isa))
      body()
    }
  }

  /// Each (name, result, Double reference) within `bound` relative L2 error; returns the largest.
  private func assertClose(_ results: [(String, Tensor, [Double])], within bound: Double, _ label: String)
    -> Double
  {
    var largest = 0.0
    for (name, ours, expected) in results {
      let error = relativeL2Error(ours.array, expected)
      largest = max(largest, error)
      XCTAssertLessThanOrEqual(error, bound, "\(name) \(label)")
    }
    return largest
  }

  // MARK: Adam

  /// The scalar update Adam.step had before the C kernel (Float arithmetic, one element at a time).
  private func scalarAdam(
    p: Tensor, g: Tensor, m: Tensor, v: Tensor, step: Int, learningRate: Float, weightDecay: Float,
    gradientScale: Float
  ) {
    let (b1, b2, eps): (Float, Float, Float) = (0.9, 0.999, 1e-8)
    let correction1 = Float(1 - pow(Double(b1), Double(step)))
    let correction2 = Float(1 - pow(Double(b2), Double(step)))
    let stepSize = learningRate / correction1
    let inverseRootCorrection2 = 1 / correction2.squareRoot()
    let decay = 1 - learningRate * weightDecay
    for i in 0..<p.count {
      let gi = g[i] * gradientScale
      if weightDecay != 0 { p[i] *= decay }
      m[i] = b1 * m[i] + (1 - b1) * gi
      v[i] = b2 * v[i] + (1 - b2) * gi * gi
      p[i] -= stepSize * m[i] / (v[i].squareRoot() * inverseRootCorrection2 + eps)
    }
  }

  /// Sizes around the 16-float vectors and past the two-thread threshold; with and without weight
  /// decay and a gradient scale; three steps (bias correction changes); 1 and 2 threads.
  func testAdamMatchesScalarFormulaBitForBitOnEveryInstructionSet() {
    forEveryInstructionSet {
      for threads in [1, 2] {
        BLAS.setThreads(threads)
        defer { BLAS.setThreads(1) }
        for (weightDecay, gradientScale) in [(Float(0), Float(1)), (0.01, 1), (0.05, 0.37)] {
          let sizes = [1, 15, 16, 17, 100, 70_001, 140_003]  // two threads: a cut inside the last
          let parameters = sizes.enumerated().map { index, size in
            let parameter = Parameter(name: "p\(index)", shape: [size])
            parameter.value.copy(from: randomTensor([size], seed: UInt64(index)))
            return parameter
          }
          let reference = parameters.map {
            (p: $0.value.clone(), m: Tensor(zeros: $0.shape), v: Tensor(zeros: $0.shape))
          }
          let adam = Adam(parameters: parameters, learningRate: 0.01, weightDecay: weightDecay)
          for step in 1...3 {
            for (index, parameter) in parameters.enumerated() {
              parameter.grad.copy(
                from: randomTensor(parameter.shape, scale: 3, seed: UInt64(100 * step + index)))
              scalarAdam(
                p: reference[index].p, g: parameter.grad, m: reference[index].m, v: reference[index].v,
                step: step, learningRate: 0.01, weightDecay: weightDecay, gradientScale: gradientScale)
            }
            let gradients = parameters.map { $0.grad.array }
            adam.step(learningRate: 0.01, gradientScale: gradientScale)
            let label =
              "ISA \(ck_isa()) threads \(threads) decay \(weightDecay) scale \(gradientScale) step \(step)"
            for (index, parameter) in parameters.enumerated() {
              XCTAssertEqual(parameter.value.array, reference[index].p.array, "value \(index) \(label)")
              XCTAssertEqual(adam.moments[index].m.array, reference[index].m.array, "m \(index) \(label)")
              XCTAssertEqual(adam.moments[index].v.array, reference[index].v.array, "v \(index) \(label)")
              XCTAssertEqual(parameter.grad.array, gradients[index], "grad unchanged \(index) \(label)")
            }
          }
        }
      }
    }
  }

  /// Clipping through Adam's gradient scale gives the bits of clipping the gradients in place.
  func testClippingFactorThroughAdamEqualsScalingTheGradients() {
    let sizes = [5, 40_000, 33]
    func make() -> [Parameter] {
      sizes.enumerated().map { index, size in
        let parameter = Parameter(name: "p\(index)", shape: [size])
        parameter.value.copy(from: randomTensor([size], seed: UInt64(index)))
        parameter.grad.copy(from: randomTensor([size], scale: 2, seed: UInt64(50 + index)))
        return parameter
      }
    }
    let (inPlace, fused) = (make(), make())
    let norm = clipGradientNorm(inPlace, maxNorm: 10)
    XCTAssertGreaterThan(norm, 10)
    Adam(parameters: inPlace, learningRate: 0.01).step()
    let factor = clippingFactor(norm: gradientNorm(fused), maxNorm: 10)
    XCTAssertLessThan(factor, 1)
    Adam(parameters: fused, learningRate: 0.01).step(learningRate: 0.01, gradientScale: factor)
    for (a, b) in zip(inPlace, fused) { XCTAssertEqual(a.value.array, b.value.array) }
    XCTAssertEqual(clippingFactor(norm: 3, maxNorm: 10), 1)
    XCTAssertEqual(clippingFactor(norm: .nan, maxNorm: 10), 1)
  }

  /// The norm does not depend on the thread count (its sum is split the same way on any).
  func testGradientNormIsTheSameOnOneAndTwoThreads() {
    let parameters = [3, 70_000, 200_001].enumerated().map { index, size in
      let parameter = Parameter(name: "p\(index)", shape: [size])
      parameter.grad.copy(from: randomTensor([size], seed: UInt64(7 + index)))
      return parameter
    }
    var exact = 0.0
    for parameter in parameters {
      for i in 0..<parameter.grad.count { exact += Double(parameter.grad[i]) * Double(parameter.grad[i]) }
    }
    BLAS.setThreads(1)
    let one = gradientNorm(parameters)
    BLAS.setThreads(2)
    let two = gradientNorm(parameters)
    BLAS.setThreads(1)
    XCTAssertEqual(one, two)
    XCTAssertEqual(one, exact.squareRoot(), accuracy: 1e-6 * exact.squareRoot())
  }

  // MARK: LSTM cell

  private func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

  /// The LSTM step's forward and backward, rows of 1 to 40 units (vectors and partial vectors),
  /// pre-activations up to ±12 (saturated gates) and near 0 (tanh's series branch), the state in
  /// place as inference runs it.
  func testLSTMCellMatchesDoubleReferenceOnEveryInstructionSet() {
    var largest = 0.0
    forEveryInstructionSet {
      for (batch, H) in [(3, 1), (2, 5), (2, 16), (3, 17), (2, 40)] {
        let seed = UInt64(batch * 100 + H)
        for scale: Float in [0.1, 3, 12] {
          let pre = randomTensor([batch, 4 * H], scale: scale, seed: seed)
          let cPrev = randomTensor([batch, H], scale: 2, seed: seed + 1)
          let dh = randomTensor([batch, H], seed: seed + 2)
          let dcNext = randomTensor([batch, H], seed: seed + 3)
          // Double reference
          var (gates, c, tc, h) = ([Double](), [Double](), [Double](), [Double]())
          var (dpre, dcPrev) = ([Double](repeating: 0, count: batch * 4 * H), [Double]())
          for b in 0..<batch {
            let a = (0..<4 * H).map { Double(pre[b * 4 * H + $0]) }
            let i = (0..<H).map { sigmoid(a[$0]) }
            let f = (0..<H).map { sigmoid(a[H + $0]) }
            let g = (0..<H).map { Foundation.tanh(a[2 * H + $0]) }
            let o = (0..<H).map { sigmoid(a[3 * H + $0]) }
            gates += i + f + g + o
            for j in 0..<H {
              let cj = f[j] * Double(cPrev[b * H + j]) + i[j] * g[j]
              let tj = Foundation.tanh(cj)
              c.append(cj)
              tc.append(tj)
              h.append(o[j] * tj)
              // backward: h = o tanh c, c = f c_prev + i g
              let dhj = Double(dh[b * H + j])
              let dcj = Double(dcNext[b * H + j]) + dhj * o[j] * (1 - tj * tj)
              dpre[b * 4 * H + j] = dcj * g[j] * i[j] * (1 - i[j])
              dpre[b * 4 * H + H + j] = dcj * Double(cPrev[b * H + j]) * f[j] * (1 - f[j])
              dpre[b * 4 * H + 2 * H + j] = dcj * i[j] * (1 - g[j] * g[j])
              dpre[b * 4 * H + 3 * H + j] = dhj * tj * o[j] * (1 - o[j])
              dcPrev.append(dcj * f[j])
            }
          }
          let label = "ISA \(ck_isa()) B\(batch) H\(H) scale \(scale)"
          // forward, the cell state updated in place
          let (gatesOut, state) = (pre.clone(), cPrev.clone())
          let (tanhC, hOut) = (Tensor(zeros: [batch, H]), Tensor(zeros: [batch, H]))
          LSTMCell.forward(
            gates: gatesOut.pointer, cPrev: state.pointer, c: state.pointer, tanhC: tanhC.pointer,
            h: hOut.pointer, batch: batch, hidden: H)
          // backward, from the Float forward's values
          let (dpreOut, dc) = (Tensor(zeros: [batch, 4 * H]), dcNext.clone())
          LSTMCell.backward(
            dpre: dpreOut.pointer, dc: dc.pointer, dh: dh.pointer, gates: gatesOut.pointer,
            cPrev: cPrev.pointer, tanhC: tanhC.pointer, batch: batch, hidden: H)
          let results = [
            ("gates", gatesOut, gates), ("c", state, c), ("tanh c", tanhC, tc), ("h", hOut, h),
            ("dpre", dpreOut, dpre), ("dc", dc, dcPrev),
          ]
          largest = max(largest, assertClose(results, within: 4e-6, label))
        }
      }
    }
    print("LSTM cell kernels: largest relative L2 error \(largest) (bound 4e-6)")
  }

  /// The peephole cell's forward and backward against Double loops, as the LSTM's above.
  func testPeepholeCellMatchesDoubleReferenceOnEveryInstructionSet() {
    var largest = 0.0
    forEveryInstructionSet {
      for (batch, H) in [(3, 1), (2, 16), (3, 17), (2, 40)] {
        let seed = UInt64(batch * 1000 + H)
        for scale: Float in [0.1, 3, 12] {
          let pre = randomTensor([batch, 4 * H], scale: scale, seed: seed)
          let peep = randomTensor([3, H], scale: 1, seed: seed + 4)
          let cPrev = randomTensor([batch, H], scale: 2, seed: seed + 1)
          let dh = randomTensor([batch, H], seed: seed + 2)
          let dcNext = randomTensor([batch, H], seed: seed + 3)
          let dpeepStart = randomTensor([3, H], seed: seed + 5)
          var (gates, c, tc, h) = ([Double](), [Double](), [Double](), [Double]())
          var dpre = [Double](repeating: 0, count: batch * 4 * H)
          var dcPrev = [Double]()
          var dpeep = dpeepStart.array.map(Double.init)
          for b in 0..<batch {
            let a = (0..<4 * H).map { Double(pre[b * 4 * H + $0]) }
            let p = (0..<3 * H).map { Double(peep[$0]) }
            let cp = (0..<H).map { Double(cPrev[b * H + $0]) }
            let i = (0..<H).map { sigmoid(a[$0] + p[$0] * cp[$0]) }
            let f = (0..<H).map { sigmoid(a[H + $0] + p[H + $0] * cp[$0]) }
            let g = (0..<H).map { Foundation.tanh(a[2 * H + $0]) }
            let cNew = (0..<H).map { f[$0] * cp[$0] + i[$0] * g[$0] }
            let o = (0..<H).map { sigmoid(a[3 * H + $0] + p[2 * H + $0] * cNew[$0]) }
            gates += i + f + g + o
            for j in 0..<H {
              let tj = Foundation.tanh(cNew[j])
              c.append(cNew[j])
              tc.append(tj)
              h.append(o[j] * tj)
              let dhj = Double(dh[b * H + j])
              let dAo = dhj * tj * o[j] * (1 - o[j])
              let dcj = Double(dcNext[b * H + j]) + dhj * o[j] * (1 - tj * tj) + dAo * p[2 * H + j]
              let dAi = dcj * g[j] * i[j] * (1 - i[j])
              let dAf = dcj * cp[j] * f[j] * (1 - f[j])
              dpre[b * 4 * H + j] = dAi
              dpre[b * 4 * H + H + j] = dAf
              dpre[b * 4 * H + 2 * H + j] = dcj * i[j] * (1 - g[j] * g[j])
              dpre[b * 4 * H + 3 * H + j] = dAo
              dcPrev.append(dcj * f[j] + dAi * p[j] + dAf * p[H + j])
              dpeep[j] += dAi * cp[j]
              dpeep[H + j] += dAf * cp[j]
              dpeep[2 * H + j] += dAo * cNew[j]
            }
          }
          let label = "ISA \(ck_isa()) B\(batch) H\(H) scale \(scale)"
          let (gatesOut, state) = (pre.clone(), cPrev.clone())
          let (tanhC, hOut) = (Tensor(zeros: [batch, H]), Tensor(zeros: [batch, H]))
          PeepholeCell.forward(
            gates: gatesOut.pointer, peep: peep.pointer, cPrev: cPrev.pointer, c: state.pointer,
            tanhC: tanhC.pointer, h: hOut.pointer, batch: batch, hidden: H)
          let (dpreOut, dc, dpeepOut) = (Tensor(zeros: [batch, 4 * H]), dcNext.clone(), dpeepStart.clone())
          PeepholeCell.backward(
            dpre: dpreOut.pointer, dc: dc.pointer, dpeep: dpeepOut.pointer, dh: dh.pointer,
            gates: gatesOut.pointer, peep: peep.pointer, cPrev: cPrev.pointer, c: state.pointer,
            tanhC: tanhC.pointer, batch: batch, hidden: H)
          let results = [
            ("gates", gatesOut, gates), ("c", state, c), ("tanh c", tanhC, tc), ("h", hOut, h),
            ("dpre", dpreOut, dpre), ("dc", dc, dcPrev), ("dpeep", dpeepOut, dpeep),
          ]
          largest = max(largest, assertClose(results, within: 4e-6, "peephole \(label)"))
        }
      }
    }
    print("peephole cell kernels: largest relative L2 error \(largest) (bound 4e-6)")
  }

  // MARK: Softmax

  /// Softmax and loss over row lengths around the vectors, logits spread up to ±90 (e^x's clamps and
  /// underflow to 0), ignored rows, 1 and 2 threads (rows shared out).
  func testSoftmaxMatchesDoubleReferenceOnEveryInstructionSet() {
    var largest = 0.0
    forEveryInstructionSet {
      for (rows, classes, scale) in [(3, 1, Float(1)), (5, 7, 4), (4, 16, 1), (70, 33, 20), (130, 1000, 90)] {
        for threads in [1, 2] {
          BLAS.setThreads(threads)
          defer { BLAS.setThreads(1) }
          let logits = randomTensor([rows, classes], scale: scale, seed: UInt64(rows + classes))
          let targets = (0..<rows).map { ($0 * 7 + 3) % classes }
          var expected = [Double]()
          var (loss, counted) = (0.0, 0)
          for r in 0..<rows {
            let z = (0..<classes).map { Double(logits[r * classes + $0]) }
            let m = z.max()!
            let sum = z.reduce(0) { $0 + Foundation.exp($1 - m) }
            expected += z.map { Foundation.exp($0 - m) / sum }
            if targets[r] != 0 {
              loss += Foundation.log(sum) - (z[targets[r]] - m)
              counted += 1
            }
          }
          let label = "ISA \(ck_isa()) \(rows)×\(classes) scale \(scale) threads \(threads)"
          let softmax = SoftmaxCrossEntropy()
          let ours = softmax.forward(logits: logits, targets: targets, ignoreIndex: 0)
          let error = relativeL2Error(softmax.probabilities!.array, expected)
          largest = max(largest, error)
          XCTAssertLessThanOrEqual(error, 1e-6, "probabilities \(label)")
          let reference = counted == 0 ? 0 : loss / Double(counted)
          XCTAssertEqual(Double(ours), reference, accuracy: 1e-6 * max(1, abs(reference)), "loss \(label)")
          for r in 0..<rows {
            let row = (0..<classes).map { softmax.probabilities![r * classes + $0] }
            XCTAssertEqual(Double(row.reduce(0, +)), 1, accuracy: 1e-5, "row sum \(r) \(label)")
          }
        }
      }
    }
    print("softmax kernel: largest relative L2 error \(largest) (bound 1e-6)")
  }

  // MARK: Products

  /// C (+)= op(A) · op(B) in Double, for a [.., lda], b [.., ldb], c [m, ldc] (columns n … ldc − 1
  /// of c untouched).
  private func referenceProduct(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: Tensor, lda: Int, b: Tensor, ldb: Int,
    c: Tensor, ldc: Int, accumulate: Bool
  ) -> [Double] {
    var result = c.array.map(Double.init)
    for i in 0..<m {
      for j in 0..<n {
        var sum = accumulate ? result[i * ldc + j] : 0
        for p in 0..<k {
          let x = transA ? a[p * lda + i] : a[i * lda + p]
          let y = transB ? b[j * ldb + p] : b[p * ldb + j]
          sum += Double(x) * Double(y)
        }
        result[i * ldc + j] = sum
      }
    }
    return result
  }

  /// CKernels' packed product on every instruction set (called directly, packing and multiplying
  /// in two panel ranges as two threads would), and `Gemm.multiply` (which routes to it or to
  /// OpenBLAS) on 1 and 2 threads: every transposition, accumulating or not, sizes around the
  /// 8 × 32 tile, depths past the 512-deep blocks, rows past the 256-row blocks, padded strides.
  func testProductsMatchDoubleReferenceOnEveryInstructionSet() {
    var largest = 0.0
    let shapes = [
      (1, 1, 1), (3, 5, 7), (9, 17, 33), (8, 32, 16), (17, 47, 515), (33, 100, 1030), (260, 40, 20),
      (7, 16, 600),
    ]
    forEveryInstructionSet {
      for (m, n, k) in shapes {
        for (transA, transB, accumulate) in [
          (false, false, false), (false, true, true), (true, false, true), (true, true, false),
        ] {
          let (lda, ldb, ldc) = ((transA ? m : k) + 3, (transB ? k : n) + 5, n + 2)
          let seed = UInt64(m * 10_000 + n * 100 + k)
          let a = randomTensor([(transA ? k : m) * lda], seed: seed)
          let b = randomTensor([(transB ? n : k) * ldb], seed: seed + 1)
          let c = randomTensor([m * ldc], seed: seed + 2)
          let expected = referenceProduct(
            transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c,
            ldc: ldc, accumulate: accumulate)
          let label = "ISA \(ck_isa()) \(m)×\(n)×\(k) transA \(transA) transB \(transB) add \(accumulate)"
          // the kernel itself, in two panel ranges
          let direct = c.clone()
          let packed = Tensor(zeros: [ck_gemm_packed_size(Int32(k), Int32(n))])
          let panels = Int32((n + 15) / 16)
          let middle = panels / 2 & ~1
          for (begin, end) in [(0, middle), (middle, panels)] {
            ck_gemm_pack(
              b.pointer, Int32(ldb), transB ? 1 : 0, Int32(k), Int32(n), begin, end, packed.pointer)
            ck_gemm_packed(
              Int32(m), Int32(n), Int32(k), a.pointer, Int32(lda), transA ? 1 : 0, packed.pointer,
              direct.pointer, Int32(ldc), accumulate ? 1 : 0, begin, end)
          }
          var error = relativeL2Error(direct.array, expected)
          largest = max(largest, error)
          XCTAssertLessThanOrEqual(error, 1e-5, "kernel \(label)")
          // through Gemm, on 1 and 2 threads
          for threads in [1, 2] {
            BLAS.setThreads(threads)
            defer { BLAS.setThreads(1) }
            let routed = c.clone()
            Gemm.multiply(
              transA: transA, transB: transB, m: m, n: n, k: k, a: a.pointer, lda: lda, b: b.pointer,
              ldb: ldb, accumulate: accumulate, c: routed.pointer, ldc: ldc, workspace: PackedMatrix())
            error = relativeL2Error(routed.array, expected)
            largest = max(largest, error)
            XCTAssertLessThanOrEqual(error, 1e-5, "Gemm threads \(threads) \(label)")
          }
        }
      }
    }
    print("products: largest relative L2 error \(largest) (bound 1e-5)")
  }

  /// A matrix packed once serves several products (the recurrent weight at every step), and the
  /// result does not depend on the thread count; without AVX-512 the products fall back to
  /// OpenBLAS on the unpacked source.
  func testPackedOnceProductsAreTheSameOnOneAndTwoThreads() {
    let (m, n, k) = (32, 200, 96)
    let weight = randomTensor([n, k], seed: 3)  // op(B) = weightᵀ
    let inputs = (0..<3).map { randomTensor([m, k], seed: UInt64(10 + $0)) }
    var expected = [Double](repeating: 0, count: m * n)
    for a in inputs {
      for i in 0..<m {
        for j in 0..<n {
          for p in 0..<k { expected[i * n + j] += Double(a[i * k + p]) * Double(weight[j * k + p]) }
        }
      }
    }
    forEveryInstructionSet {
      var results: [[Float]] = []
      for threads in [1, 2] {
        BLAS.setThreads(threads)
        defer { BLAS.setThreads(1) }
        let packed = PackedMatrix()
        packed.pack(b: weight.pointer, ldb: k, transB: true, k: k, n: n)
        let c = Tensor(zeros: [m, n])
        for (step, a) in inputs.enumerated() {
          Gemm.multiply(
            transA: false, m: m, a: a.pointer, lda: k, packed: packed, accumulate: step > 0, c: c.pointer,
            ldc: n)
        }
        results.append(c.array)
        XCTAssertLessThanOrEqual(
          relativeL2Error(c.array, expected), 1e-5, "ISA \(ck_isa()) threads \(threads)")
      }
      if Gemm.usesKernels { XCTAssertEqual(results[0], results[1]) }
    }
  }
}
