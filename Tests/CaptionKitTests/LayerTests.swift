import Foundation
import XCTest

@testable import CaptionKit

/// Σ a·b in Double: the scalar "loss" through which layer gradient checks are run.
func dot(_ a: Tensor, _ b: Tensor) -> Double {
  precondition(a.count == b.count)
  var sum = 0.0
  for i in 0..<a.count { sum += Double(a[i]) * Double(b[i]) }
  return sum
}

/// One helper for every layer (in the spirit of tinygrad's `helper_test_op`): with the loss
/// L = Σ forward() ⊙ R for a fixed random R (so dL/doutput = R), checks the input gradient returned by
/// `backward(R)` and every parameter's accumulated `grad` against central finite differences.
/// Relative error bound `tolerance` (default 1e-2) with ε = `epsilon`; losses accumulated in Double.
func checkLayerGradients(
  _ name: String, input: Tensor?, parameters: [Parameter], epsilon: Float = 1e-2,
  tolerance: Double = 1e-2, samples: Int = 24, file: StaticString = #filePath, line: UInt = #line,
  forward: () -> Tensor, backward: (Tensor) -> Tensor?
) {
  let firstOutput = forward()
  let projection = randomTensor(firstOutput.shape, seed: 99)
  zeroGradients(parameters)
  let inputGrad = backward(projection)?.clone()
  let parameterGrads = parameters.map { $0.grad.clone() }
  let loss = { dot(forward(), projection) }
  if let input = input {
    guard let inputGrad = inputGrad else {
      XCTFail("\(name): no input gradient", file: file, line: line)
      return
    }
    XCTAssertEqual(inputGrad.shape, input.shape, file: file, line: line)
    assertGradientMatches(
      "\(name) input", x: input, analytic: inputGrad, samples: samples, epsilon: epsilon,
      tolerance: tolerance, file: file, line: line, loss: loss)
  }
  for (parameter, grad) in zip(parameters, parameterGrads) {
    assertGradientMatches(
      "\(name) \(parameter.name)", x: parameter.value, analytic: grad, samples: samples,
      epsilon: epsilon, tolerance: tolerance, file: file, line: line, loss: loss)
  }
}

/// Finite-difference check for piecewise-smooth functions (ReLU, max-pool). `evaluate` returns the
/// loss and the activation pattern (ReLU signs, pool argmaxes). When x ± ε keeps the unperturbed
/// pattern on both sides, the central difference is used; when only one side keeps it, the one-sided
/// difference on that side (exact up to rounding here: with one element perturbed, these networks are
/// linear in it within a pattern); when neither does, ε is quartered (twice) and then the sample is
/// skipped. At most a quarter of the samples may be skipped; the rest must agree within `tolerance`
/// relative error |a − n| / max(|a| + |n|, floor). Losses are accumulated in Double.
func assertGradientMatchesAwayFromKinks(
  _ name: String, x: Tensor, analytic: Tensor, samples: Int = 16, epsilon: Float = 1e-3,
  tolerance: Double = 1e-2, floor: Double = 1e-3, seed: UInt64 = 7, file: StaticString = #filePath,
  line: UInt = #line, evaluate: () -> (loss: Double, pattern: [Int32])
) {
  var generator = SeededGenerator(seed: seed)
  let picks =
    x.count <= samples
    ? Array(0..<x.count) : (0..<samples).map { _ in Int(generator.next() % UInt64(x.count)) }
  var skipped = 0
  for index in picks {
    let saved = x[index]
    let base = evaluate()
    var numerical: Double?
    for step in [epsilon, epsilon / 4, epsilon / 16] {
      x[index] = saved + step
      let plus = evaluate()
      x[index] = saved - step
      let minus = evaluate()
      x[index] = saved
      let plusOK = plus.pattern == base.pattern
      let minusOK = minus.pattern == base.pattern
      // Use the perturbation actually applied (saved ± step rounds in Float).
      let up = Double(saved + step) - Double(saved)
      let down = Double(saved) - Double(saved - step)
      if plusOK && minusOK {
        numerical = (plus.loss - minus.loss) / (up + down)
      } else if plusOK {
        numerical = (plus.loss - base.loss) / up
      } else if minusOK {
        numerical = (base.loss - minus.loss) / down
      }
      if numerical != nil { break }
    }
    guard let numerical = numerical else {
      skipped += 1
      continue
    }
    let exact = Double(analytic[index])
    let error = abs(exact - numerical) / max(abs(exact) + abs(numerical), floor)
    if error > tolerance {
      XCTFail(
        "\(name)[\(index)]: analytic \(exact) vs numerical \(numerical) (relative error \(error))",
        file: file, line: line)
      return
    }
  }
  XCTAssertLessThanOrEqual(
    skipped, picks.count / 4, "\(name): too many samples at kinks", file: file, line: line)
}

/// The sign pattern of a tensor (1 where > 0): a ReLU output's activation pattern.
func positivePattern(_ t: Tensor) -> [Int32] {
  (0..<t.count).map { t[$0] > 0 ? 1 : 0 }
}

/// Asserts two tensors agree elementwise within `accuracy` (absolute).
func assertClose(
  _ a: Tensor, _ b: Tensor, accuracy: Float, _ message: String = "", file: StaticString = #filePath,
  line: UInt = #line
) {
  XCTAssertEqual(a.shape, b.shape, message, file: file, line: line)
  guard a.count == b.count else { return }
  var worst: Float = 0
  var worstIndex = 0
  for i in 0..<a.count where abs(a[i] - b[i]) > worst {
    worst = abs(a[i] - b[i])
    worstIndex = i
  }
  XCTAssertLessThanOrEqual(
    worst, accuracy, "\(message) worst at \(worstIndex): \(a[worstIndex]) vs \(b[worstIndex])", file: file,
    line: line)
}

final class LayerTests: XCTestCase {
  // MARK: Conv2D

  func testConvOnTwoByTwoImageMatchesHandComputation() {
    // in = [[1, 2], [3, 4]], w = [[0, 0, 0], [0, 1, 2], [0, 3, 4]], b = −5, pad 1:
    // out[0,0] = 1·1 + 2·2 + 3·3 + 4·4 = 30;  out[0,1] = 1·2 + 3·4 = 14
    // out[1,0] = 1·3 + 2·4 = 11;              out[1,1] = 1·4 = 4;  then + b → [25, 9, 6, −1]
    let conv = Conv2D(inChannels: 1, outChannels: 1, relu: false)
    conv.weight.value.copy(from: Tensor(shape: [9], values: [0, 0, 0, 0, 1, 2, 0, 3, 4]))
    conv.bias.value[0] = -5
    let input = Tensor(shape: [1, 1, 2, 2], values: [1, 2, 3, 4])
    XCTAssertEqual(conv.forward(input).array, [25, 9, 6, -1])

    let fused = Conv2D(inChannels: 1, outChannels: 1, relu: true)
    fused.weight.value.copy(from: conv.weight.value)
    fused.bias.value[0] = -5
    XCTAssertEqual(fused.forward(input).array, [25, 9, 6, 0])
    // Backward with dL/dout = 1 everywhere; the ReLU stops the last pixel.
    // dbias = 3; dw[ky,kx] = Σ over unmasked outputs of the input they saw, e.g. centre tap
    // dw[1,1] = 1 + 2 + 3 = 6; dinput[0,0] = w[1,1] + w[0,1]·… : checked by finite differences below.
    let grad = fused.backward(Tensor(shape: [1, 1, 2, 2], values: [1, 1, 1, 1]))!
    XCTAssertEqual(fused.bias.grad[0], 3)
    XCTAssertEqual(fused.weight.grad[4], 6)
    // dinput[1,1] is reached from out[0,0] by w[2,2]=4, out[0,1] by w[2,1]=3, out[1,0] by w[1,2]=2.
    XCTAssertEqual(grad[3], 4 + 3 + 2)
  }

  func testConvMatchesDirectReferenceOnOddShapes() {
    for (batch, cin, cout, height, width) in [
      (2, 3, 4, 5, 7), (1, 2, 3, 1, 1), (3, 1, 2, 1, 6), (2, 5, 3, 4, 4),
    ] {
      let conv = Conv2D(inChannels: cin, outChannels: cout, relu: true)
      var generator = SeededGenerator(seed: 3)
      conv.initialize(using: &generator)
      Initialization.uniform(conv.bias.value, bound: 0.5, using: &generator)
      let input = randomTensor([batch, cin, height, width], seed: 5)
      let expected = referenceConvolution(
        input: input, weight: conv.weight.value, bias: conv.bias.value, relu: true)
      assertClose(conv.forward(input), expected, accuracy: 1e-5, "\(batch)x\(cin)x\(height)x\(width)")
    }
  }

  func testConvChunkingGivesTheSameResultsAsOneChunk() {
    let input = randomTensor([5, 3, 6, 5], seed: 11)
    let outputGrad = randomTensor([5, 4, 6, 5], seed: 12)
    var results: [(Tensor, Tensor, Tensor, Tensor)] = []
    for budget in [1, 2 * 27 * 30, 1 << 20] {  // 1 image, 2 images, all 5 per chunk
      let conv = Conv2D(inChannels: 3, outChannels: 4)
      conv.columnBudget = budget
      var generator = SeededGenerator(seed: 1)
      conv.initialize(using: &generator)
      let output = conv.forward(input).clone()
      let inputGrad = conv.backward(outputGrad)!.clone()
      results.append((output, inputGrad, conv.weight.grad.clone(), conv.bias.grad.clone()))
    }
    for r in results.dropFirst() {
      assertClose(r.0, results[0].0, accuracy: 1e-5, "output")
      assertClose(r.1, results[0].1, accuracy: 1e-5, "input grad")
      assertClose(r.2, results[0].2, accuracy: 1e-4, "weight grad")
      assertClose(r.3, results[0].3, accuracy: 1e-4, "bias grad")
    }
  }

  /// The loops split over compute threads (Parallel.forRanges) give the results of one thread.
  func testConvAndPoolOnTwoThreadsMatchOneThread() {
    let input = randomTensor([3, 5, 9, 7], seed: 13)
    let outputGrad = randomTensor([3, 6, 4, 3], seed: 14)
    var results: [[[Float]]] = []
    let saved = Parallel.workers
    defer { BLAS.setThreads(saved) }
    for threads in [1, 2] {
      BLAS.setThreads(threads)
      XCTAssertEqual(Parallel.workers, threads)
      let conv = Conv2D(inChannels: 5, outChannels: 6)
      conv.columnBudget = 45 * 63 * 2  // chunks of 2 images
      var generator = SeededGenerator(seed: 1)
      conv.initialize(using: &generator)
      let pool = MaxPool2D()
      let pooled = pool.forward(conv.forward(input)).clone()
      let inputGrad = conv.backward(pool.backward(outputGrad))!.clone()
      results.append([pooled.array, inputGrad.array, conv.weight.grad.array, conv.bias.grad.array])
    }
    for (a, b) in zip(results[0], results[1]) {
      XCTAssertEqual(a.count, b.count)
      for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-5 * max(1, abs(x))) }
    }
  }

  func testConvGradientsMatchFiniteDifferences() {
    for relu in [false, true] {
      let conv = Conv2D(inChannels: 3, outChannels: 4, relu: relu)
      conv.columnBudget = 27 * 20  // two chunks for a batch of 3
      var generator = SeededGenerator(seed: 21)
      conv.initialize(using: &generator)
      Initialization.uniform(conv.bias.value, bound: 0.3, using: &generator)
      let input = randomTensor([3, 3, 5, 4], seed: 22)
      let projection = randomTensor([3, 4, 5, 4], seed: 99)
      zeroGradients(conv.parameters)
      _ = conv.forward(input)
      let inputGrad = conv.backward(projection)!.clone()
      let evaluate = { () -> (loss: Double, pattern: [Int32]) in
        let output = conv.forward(input)
        return (dot(output, projection), relu ? positivePattern(output) : [])
      }
      for (x, grad, label) in [
        (input, inputGrad, "input"), (conv.weight.value, conv.weight.grad.clone(), "weight"),
        (conv.bias.value, conv.bias.grad.clone(), "bias"),
      ] {
        assertGradientMatchesAwayFromKinks(
          "conv relu=\(relu) \(label)", x: x, analytic: grad, samples: 24, evaluate: evaluate)
      }
    }
  }

  func testConvWithoutInputGradStillAccumulatesParameters() {
    let conv = Conv2D(inChannels: 2, outChannels: 2)
    var generator = SeededGenerator(seed: 2)
    conv.initialize(using: &generator)
    let input = randomTensor([1, 2, 3, 3], seed: 4)
    _ = conv.forward(input)
    let grad = randomTensor([1, 2, 3, 3], seed: 6)
    XCTAssertNil(conv.backward(grad, needInputGrad: false))
    let once = conv.weight.grad.clone()
    XCTAssertNotEqual(once.array, [Float](repeating: 0, count: once.count))
    conv.backward(grad, needInputGrad: false)
    once.scale(by: 2)
    assertClose(conv.weight.grad, once, accuracy: 1e-5, "accumulates")
  }

  func testConvReusesItsOutputWorkspace() {
    let conv = Conv2D(inChannels: 1, outChannels: 2)
    let a = conv.forward(randomTensor([2, 1, 4, 4], seed: 1))
    let b = conv.forward(randomTensor([2, 1, 4, 4], seed: 2))
    XCTAssertTrue(a === b)
    let c = conv.forward(randomTensor([3, 1, 4, 4], seed: 3))
    XCTAssertEqual(c.shape, [3, 2, 4, 4])
  }

  // MARK: Pools and ReLU

  func testMaxPoolHandCaseWithTiesAndOddSize() {
    // One 3×5 plane; the last row and column are dropped (floor).
    let input = Tensor(
      shape: [1, 1, 3, 5],
      values: [
        1, 7, 2, 2, 9,
        3, 7, 2, 2, 9,
        9, 9, 9, 9, 9,
      ])
    let pool = MaxPool2D()
    let output = pool.forward(input)
    XCTAssertEqual(output.shape, [1, 1, 1, 2])
    XCTAssertEqual(output.array, [7, 2])
    let grad = pool.backward(Tensor(shape: [1, 1, 1, 2], values: [10, 20]))
    // Ties go to the first in row-major order: 7 at (0,1), 2 at (0,2).
    XCTAssertEqual(grad.array, [0, 10, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
  }

  func testMaxPoolGradientsMatchFiniteDifferences() {
    // Distinct values spaced 0.05 apart (a shuffled ramp), so ε = 1e-2 never changes an argmax.
    var generator = SeededGenerator(seed: 8)
    let shape = [2, 3, 5, 4]
    let count = shape.reduce(1, *)
    let values = (0..<count).map { Float($0) * 0.05 - 3 }.shuffled(using: &generator)
    let input = Tensor(shape: shape, values: values)
    let pool = MaxPool2D()
    checkLayerGradients(
      "maxpool", input: input, parameters: [], forward: { pool.forward(input) },
      backward: { pool.backward($0) })
  }

  func testGlobalAvgPool() {
    let input = Tensor(shape: [1, 2, 1, 3], values: [1, 2, 6, -1, -2, 0])
    let pool = GlobalAvgPool()
    XCTAssertEqual(pool.forward(input).array, [3, -1])
    XCTAssertEqual(pool.backward(Tensor(shape: [1, 2], values: [3, 6])).array, [1, 1, 1, 2, 2, 2])
    let random = randomTensor([2, 3, 3, 2], seed: 3)
    let other = GlobalAvgPool()
    checkLayerGradients(
      "avgpool", input: random, parameters: [], forward: { other.forward(random) },
      backward: { other.backward($0) })
  }

  func testReLU() {
    let relu = ReLU()
    let input = Tensor(shape: [4], values: [-1, 0, 0.5, 2])
    XCTAssertEqual(relu.forward(input).array, [0, 0, 0.5, 2])
    XCTAssertEqual(relu.backward(Tensor(shape: [4], values: [1, 2, 3, 4])).array, [0, 0, 3, 4])
    // Values kept ≥ 0.05 away from the kink.
    let random = randomTensor([3, 7], seed: 4)
    for i in 0..<random.count where abs(random[i]) < 0.05 { random[i] = 0.1 }
    checkLayerGradients(
      "relu", input: random, parameters: [], forward: { relu.forward(random) },
      backward: { relu.backward($0) })
  }

  // MARK: Linear, Embedding

  func testLinearHandCase() {
    // W = [[1, 2], [3, 4], [5, 6]], b = [1, 0, −1], x = [[1, −1]] → y = [−1+1, −1, −1−1] = [0, −1, −2]
    let linear = Linear(inFeatures: 2, outFeatures: 3)
    linear.weight.value.copy(from: Tensor(shape: [6], values: [1, 2, 3, 4, 5, 6]))
    linear.bias.value.copy(from: Tensor(shape: [3], values: [1, 0, -1]))
    let x = Tensor(shape: [1, 2], values: [1, -1])
    XCTAssertEqual(linear.forward(x).array, [0, -1, -2])
    // dy = [1, 0, 2]: dx = dy·W = [1+10, 2+12]; dW = dyᵀx; db = dy
    let dx = linear.backward(Tensor(shape: [1, 3], values: [1, 0, 2]))!
    XCTAssertEqual(dx.array, [11, 14])
    XCTAssertEqual(linear.weight.grad.array, [1, -1, 0, 0, 2, -2])
    XCTAssertEqual(linear.bias.grad.array, [1, 0, 2])
  }

  func testLinearGradientsMatchFiniteDifferences() {
    let linear = Linear(inFeatures: 7, outFeatures: 5)
    var generator = SeededGenerator(seed: 31)
    linear.initialize(using: &generator)
    let input = randomTensor([4, 7], seed: 32)
    checkLayerGradients(
      "linear", input: input, parameters: linear.parameters, forward: { linear.forward(input) },
      backward: { linear.backward($0) })
  }

  func testEmbeddingForwardAndAccumulatingBackward() {
    let embedding = Embedding(vocabularySize: 4, embeddingSize: 2)
    embedding.weight.value.copy(from: Tensor(shape: [8], values: [0, 1, 10, 11, 20, 21, 30, 31]))
    let output = embedding.forward(tokens: [2, 0, 2])
    XCTAssertEqual(output.array, [20, 21, 0, 1, 20, 21])
    embedding.backward(Tensor(shape: [3, 2], values: [1, 2, 3, 4, 5, 6]))
    XCTAssertEqual(embedding.weight.grad.array, [3, 4, 0, 0, 6, 8, 0, 0])

    let other = Embedding(vocabularySize: 6, embeddingSize: 3)
    var generator = SeededGenerator(seed: 41)
    other.initialize(using: &generator)
    checkLayerGradients(
      "embedding", input: nil, parameters: other.parameters,
      forward: { other.forward(tokens: [1, 5, 1, 0, 3]) },
      backward: {
        other.backward($0)
        return nil
      })
  }

  // MARK: Softmax cross-entropy

  func testCrossEntropyHandCase() {
    // Row 0: softmax([0, 0, ln 2]) = [1/4, 1/4, 1/2], target 2 → ln 2.
    // Row 1: target 0 = ignored.  Row 2: uniform over 3, target 1 → ln 3.  Mean over 2 rows.
    let logits = Tensor(shape: [3, 3], values: [0, 0, Float(log(2.0)), 5, -3, 1, 1, 1, 1])
    let loss = SoftmaxCrossEntropy()
    let value = loss.forward(logits: logits, targets: [2, 0, 1], ignoreIndex: 0)
    XCTAssertEqual(Double(value), (log(2.0) + log(3.0)) / 2, accuracy: 1e-6)
    XCTAssertEqual(loss.countedTargets, 2)
    let grad = loss.backward()
    let third: Float = 1.0 / 3
    let expected: [Float] = [0.125, 0.125, -0.25, 0, 0, 0, third / 2, (third - 1) / 2, third / 2]
    for (a, b) in zip(grad.array, expected) { XCTAssertEqual(a, b, accuracy: 1e-6) }
  }

  func testCrossEntropyIsStableForHugeLogitsAndZeroWhenAllIgnored() {
    let logits = Tensor(shape: [2, 3], values: [1000, 0, -1000, 1000, 0, -1000])
    let loss = SoftmaxCrossEntropy()
    XCTAssertEqual(loss.forward(logits: logits, targets: [1, 2], ignoreIndex: -1), (1000 + 2000) / 2)
    XCTAssertTrue(loss.backward().array.allSatisfy { $0.isFinite })
    XCTAssertEqual(loss.forward(logits: logits, targets: [0, 0]), 0)
    XCTAssertEqual(loss.backward().array, [Float](repeating: 0, count: 6))
  }

  func testCrossEntropyGradientMatchesFiniteDifferences() {
    let logits = randomTensor([5, 7], scale: 3, seed: 51)
    let targets = [3, 0, 6, 1, 0]  // two ignored rows
    let loss = SoftmaxCrossEntropy()
    _ = loss.forward(logits: logits, targets: targets)
    let grad = loss.backward().clone()
    assertGradientMatches("cross-entropy logits", x: logits, analytic: grad, samples: 35, tolerance: 5e-3) {
      Double(loss.forward(logits: logits, targets: targets))
    }
  }

  func testBinaryCrossEntropyHandCase() {
    // Column weights (0, 1, 1/2): column 0 left out. Row 0: z = 0, y = 1 → ln 2; z = ln 3, y = 0 →
    // −ln(1 − 3/4) = ln 4. Row 1: z = −ln 3, y = 1 → −ln(1/4) = ln 4; z = 0, y = 0 → ln 2.
    // Loss = (1/2 rows) · (1·ln 2 + ½·ln 4 + 1·ln 4 + ½·ln 2).
    let l3 = Float(log(3.0))
    let logits = Tensor(shape: [2, 3], values: [9, 0, l3, -9, -l3, 0])
    let targets = Tensor(shape: [2, 3], values: [1, 1, 0, 0, 1, 0])
    let loss = SigmoidBinaryCrossEntropy()
    let value = loss.forward(logits: logits, targets: targets, columnWeights: [0, 1, 0.5])
    XCTAssertEqual(Double(value), (1.5 * log(2.0) + 1.5 * log(4.0)) / 2, accuracy: 1e-6)
    // dL/dz = w · (σ(z) − y) / 2: row 0 (1·(0.5 − 1), ½·(0.75 − 0)), row 1 (1·(0.25 − 1), ½·(0.5 − 0)).
    let expected: [Float] = [0, -0.25, 0.1875, 0, -0.375, 0.125]
    for (a, b) in zip(loss.backward().array, expected) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    // Without weights: the mean over all six entries (row 0's column 0: z = 9, y = 1 → ln(1 + e⁻⁹)).
    let mean = loss.forward(logits: logits, targets: targets)
    let all = 2 * log(2.0) + 2 * log(4.0) + 2 * log(1 + exp(-9.0))
    XCTAssertEqual(Double(mean), all / 6, accuracy: 1e-6)
    // A row mask keeps row 1 only: its loss alone (N = 1), and no gradient for row 0.
    let masked = loss.forward(
      logits: logits, targets: targets, columnWeights: [0, 1, 0.5], rowMask: [false, true])
    XCTAssertEqual(Double(masked), log(4.0) + 0.5 * log(2.0), accuracy: 1e-6)
    for (a, b) in zip(loss.backward().array, [0, 0, 0, 0, -0.75, 0.25] as [Float]) {
      XCTAssertEqual(a, b, accuracy: 1e-6)
    }
    // Every row left out: loss and gradient 0, nothing divided by zero.
    XCTAssertEqual(loss.forward(logits: logits, targets: targets, rowMask: [false, false]), 0)
    XCTAssertTrue(loss.backward().array.allSatisfy { $0 == 0 })
  }

  func testBinaryCrossEntropyIsStableAndMatchesFiniteDifferences() {
    let huge = Tensor(shape: [1, 2], values: [1000, -1000])
    let loss = SigmoidBinaryCrossEntropy()
    let value = loss.forward(logits: huge, targets: Tensor(shape: [1, 2], values: [0, 0]))
    XCTAssertEqual(value, 500, accuracy: 1e-3)  // (1000 + 0) / 2
    XCTAssertTrue(loss.backward().array.allSatisfy { $0.isFinite })

    let logits = randomTensor([4, 6], scale: 3, seed: 52)
    let targets = Tensor(shape: [4, 6], values: (0..<24).map { Float(($0 * 7) % 3 == 0 ? 1 : 0) })
    let weights: [Float] = [0, 0, 0.5, 0.5, 0.2, 1]
    _ = loss.forward(logits: logits, targets: targets, columnWeights: weights)
    let grad = loss.backward().clone()
    assertGradientMatches("binary cross-entropy", x: logits, analytic: grad, samples: 24, tolerance: 5e-3) {
      Double(loss.forward(logits: logits, targets: targets, columnWeights: weights))
    }
  }

  // MARK: Dropout

  func testDropoutTrainingMaskScaleAndBackward() {
    let dropout = Dropout(probability: 0.25)
    let input = Tensor(zeros: [100, 100])
    input.fill(2)
    var generator = SeededGenerator(seed: 61)
    let output = dropout.forward(input, training: true, generator: &generator)
    var zeros = 0
    for i in 0..<output.count {
      if output[i] == 0 { zeros += 1 } else { XCTAssertEqual(output[i], 2 / 0.75, accuracy: 1e-6) }
    }
    XCTAssertEqual(Double(zeros) / 10_000, 0.25, accuracy: 0.02)
    let ones = Tensor(zeros: [100, 100])
    ones.fill(1)
    let grad = dropout.backward(ones)
    for i in 0..<grad.count { XCTAssertEqual(grad[i], output[i] / 2, accuracy: 1e-6) }
    // The same seed gives the same mask (resume reproduces training).
    var again = SeededGenerator(seed: 61)
    XCTAssertEqual(
      Dropout(probability: 0.25).forward(input, training: true, generator: &again).array, output.array)
  }

  func testDropoutGradientMatchesFiniteDifferences() {
    // The generator is reseeded for every forward, so the mask is the same at x ± ε.
    let dropout = Dropout(probability: 0.3)
    let input = randomTensor([4, 6], seed: 3)
    checkLayerGradients(
      "dropout", input: input, parameters: [],
      forward: {
        var generator = SeededGenerator(seed: 5)
        return dropout.forward(input, training: true, generator: &generator)
      }, backward: { dropout.backward($0) })
  }

  func testDropoutIsIdentityInEvaluation() {
    let dropout = Dropout(probability: 0.5)
    let input = randomTensor([3, 4], seed: 1)
    var generator = SeededGenerator(seed: 1)
    let state = generator.state
    XCTAssertTrue(dropout.forward(input, training: false, generator: &generator) === input)
    XCTAssertEqual(generator.state, state)
    let grad = randomTensor([3, 4], seed: 2)
    XCTAssertTrue(dropout.backward(grad) === grad)
  }

  // MARK: Random and initialisation

  func testSeededGeneratorIsSplitMix64AndRestorable() {
    // SplitMix64's published first outputs for seed 0.
    var generator = SeededGenerator(seed: 0)
    XCTAssertEqual(generator.next(), 0xE220_A839_7B1D_CDAF)
    XCTAssertEqual(generator.next(), 0x6E78_9E6A_A1B9_65F4)
    let saved = generator.state
    let a = generator.next()
    generator.state = saved
    XCTAssertEqual(generator.next(), a)
  }

  /// The first draws of the seeding and drawing helpers, written down (each feeds a stream that
  /// must not change: the loader's order, the shapes dataset, sampling).
  func testSeedingAndDrawingHelpersArePinned() {
    var loader = SeededGenerator(mixing: 9, 0, 0x5EED)
    XCTAssertEqual(loader.next(), 13_003_737_079_693_545_801)
    XCTAssertEqual((0..<4).map { _ in loader.below(23) }, [21, 19, 5, 20])
    var shapes = SeededGenerator.shapes(seed: 1, stream: 7)
    XCTAssertEqual(shapes.next(), 5_253_378_443_946_236_904)
    XCTAssertEqual((0..<4).map { _ in shapes.below32(20) }, [16, 0, 2, 14])
    XCTAssertEqual((0..<4).map { _ in shapes.int(in: -14...14) }, [-14, -3, -7, -5])
    XCTAssertEqual(shapes.nextUnitDouble(), 0.9275408777614105)
    var sampling = SeededGenerator(seed: 11 ^ (4 &* 0xD1B5_4A32_D192_ED03) ^ 0x5851_F42D_4C95_7F2D)
    XCTAssertEqual(sampling.next(), 382_787_663_915_246_709)
    XCTAssertEqual(sampling.nextUnitDouble(), 0.3997698636075445)
  }

  func testInitialisationStatistics() {
    var generator = SeededGenerator(seed: 71)
    let conv = Conv2D(inChannels: 16, outChannels: 64)
    conv.initialize(using: &generator)
    let w = conv.weight.value
    let mean = Elementwise.sum(w.pointer, count: w.count) / Double(w.count)
    let variance = Elementwise.sumOfSquares(w.pointer, count: w.count) / Double(w.count) - mean * mean
    XCTAssertEqual(mean, 0, accuracy: 0.01)
    XCTAssertEqual(variance, 2.0 / 144, accuracy: 0.1 * 2.0 / 144)  // Kaiming: 2 / fan_in
    XCTAssertEqual(conv.bias.value.array, [Float](repeating: 0, count: 64))

    let linear = Linear(inFeatures: 25, outFeatures: 400)
    linear.initialize(using: &generator)
    let values = linear.weight.value.array
    XCTAssertLessThanOrEqual(values.map(abs).max()!, 0.2)  // 1/√25
    XCTAssertGreaterThan(values.map(abs).max()!, 0.19)
    let uniformVariance = values.reduce(0.0) { $0 + Double($1 * $1) } / Double(values.count)
    XCTAssertEqual(uniformVariance, 0.04 / 3, accuracy: 0.001)  // bound² / 3
  }
}
