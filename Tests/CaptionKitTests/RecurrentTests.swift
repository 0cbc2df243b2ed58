import Foundation
import XCTest

@testable import CaptionKit

/// The recurrent cells, layers and stacks (SPEC §1, §3):
/// hand-computed steps, finite-difference gradients, step API against the sequence forward.
final class RecurrentTests: XCTestCase {
  // MARK: Helpers

  /// Sets a layer's parameters from flat row-major values (peep optional).
  private func set(
    _ layer: RecurrentLayer, wih: [Float], whh: [Float], wiv: [Float], bih: [Float], bhh: [Float],
    peep: [Float]? = nil
  ) {
    layer.weightIH.value.copy(from: Tensor(shape: layer.weightIH.shape, values: wih))
    layer.weightHH.value.copy(from: Tensor(shape: layer.weightHH.shape, values: whh))
    layer.weightIV.value.copy(from: Tensor(shape: layer.weightIV.shape, values: wiv))
    layer.biasIH.value.copy(from: Tensor(shape: layer.biasIH.shape, values: bih))
    layer.biasHH.value.copy(from: Tensor(shape: layer.biasHH.shape, values: bhh))
    if let peep { layer.weightPeep!.value.copy(from: Tensor(shape: [3, layer.hiddenSize], values: peep)) }
  }

  private func assertClose(
    _ actual: [Float], _ expected: [Float], accuracy: Float, _ message: String = "",
    file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(actual.count, expected.count, message, file: file, line: line)
    for (k, (a, e)) in zip(actual, expected).enumerated() where !(abs(a - e) <= accuracy) {
      XCTFail("\(message)[\(k)]: \(a) vs expected \(e)", file: file, line: line)
      return
    }
  }

  /// The two inputs x_0 = 2, x_1 = −1 (In = 1, B = 1) and image v = 1 (Dv = 1) of the hand cases.
  private let handInputs = Tensor(shape: [2, 1, 1], values: [2, -1])
  private let handImage = Tensor(shape: [1, 1], values: [1])

  // MARK: Hand-computed cases (H = 1 or 2, two steps)

  func testLSTMHandComputed() {
    // rows i, f, g, o. x_0 = 2, v = 1, h_0 = c_0 = 0:
    // a = W_ih x + W_iv v + b_ih + b_hh = [0.5·2+0.1+0+0.1, −0.5·2+0.2+1+0, 1·2−0.3, 0.25·2+0.4−0.1]
    //   = [1.2, 0.2, 1.7, 0.8]
    // i = σ(1.2) = 0.768524783, f = σ(0.2) = 0.549833997, g = tanh(1.7) = 0.935409071,
    // o = σ(0.8) = 0.689974481; c_1 = i·g = 0.718885053; h_1 = o·tanh(c_1) = 0.425174836.
    // Step 2, x_1 = −1: a = W_ih x + W_hh h_1 + W_iv v + b = [−0.172448, 1.614965, −1.044895, 0.092517]
    // i = 0.456994635, f = 0.834099575, g = −0.779813745, o = 0.523112887;
    // c_2 = f·c_1 + i·g = 0.24325102; h_2 = o·tanh(c_2) = 0.124795962.
    // With image_input `first`, step 2 drops W_iv v: a = [−0.272448, 1.414965, −0.744895, −0.307483],
    // i = 0.432306324, f = 0.804547879, g = −0.63209356, o = 0.423729347, c_2 = 0.305119401,
    // h_2 = 0.125419882.
    for (mode, expected) in [
      (ImageInput.every, [Float](arrayLiteral: 0.425174836, 0.124795962)),
      (.first, [0.425174836, 0.125419882]),
    ] {
      let stack = RecurrentStack(
        cell: .lstm, inputSize: 1, hiddenSize: 1, imageSize: 1, layers: 1, imageInput: mode)
      set(
        stack.layers[0], wih: [0.5, -0.5, 1.0, 0.25], whh: [0.3, -0.2, 0.6, 0.1], wiv: [0.1, 0.2, -0.3, 0.4],
        bih: [0, 1, 0, 0], bhh: [0.1, 0, 0, -0.1])
      let h = stack.forward(inputs: handInputs, image: handImage)
      assertClose(h.array, expected, accuracy: 1e-6, "lstm \(mode)")
    }
  }

  func testPeepholeHandComputed() {
    // As the LSTM case plus p = (p_i, p_f, p_o) = (0.5, −0.4, 0.3). Step 1: c_0 = 0, so i, f, g as the
    // LSTM's and c_1 = 0.718885053; o = σ(0.8 + 0.3·c_1) = σ(1.015666) = 0.734127435;
    // h_1 = o·tanh(c_1) = 0.45238269.
    // Step 2: a = [−0.164285, 1.609523, −1.02857, 0.095238]; i = σ(a_i + 0.5·c_1) = 0.54863507,
    // f = σ(a_f − 0.4·c_1) = 0.789509184, g = −0.773334336, c_2 = f·c_1 + i·g = 0.143288014,
    // o = σ(a_o + 0.3·c_2) = 0.534501254, h_2 = 0.076067741.
    let stack = RecurrentStack(
      cell: .peephole, inputSize: 1, hiddenSize: 1, imageSize: 1, layers: 1, imageInput: .every)
    set(
      stack.layers[0], wih: [0.5, -0.5, 1.0, 0.25], whh: [0.3, -0.2, 0.6, 0.1], wiv: [0.1, 0.2, -0.3, 0.4],
      bih: [0, 1, 0, 0], bhh: [0.1, 0, 0, -0.1], peep: [0.5, -0.4, 0.3])
    let h = stack.forward(inputs: handInputs, image: handImage)
    assertClose(h.array, [0.45238269, 0.076067741], accuracy: 1e-6, "peephole")
  }

  func testCoupledHandComputed() {
    // rows f, g, o, i = 1 − f. Step 1: a = [−0.5·2+0.2+1, 1·2−0.3, 0.25·2+0.4−0.1] = [0.2, 1.7, 0.8];
    // f = 0.549833997, g = 0.935409071, o = 0.689974481; c_1 = (1 − f)·g = 0.421089362;
    // h_1 = o·tanh(c_1) = 0.274504805.
    // Step 2: a = [1.645099, −1.135297, 0.07745]; f = 0.838227571, g = −0.812824417, o = 0.519352947;
    // c_2 = f·c_1 + (1 − f)·g = 0.221476133; h_2 = 0.113179753.
    let stack = RecurrentStack(
      cell: .coupled, inputSize: 1, hiddenSize: 1, imageSize: 1, layers: 1, imageInput: .every)
    set(
      stack.layers[0], wih: [-0.5, 1.0, 0.25], whh: [-0.2, 0.6, 0.1], wiv: [0.2, -0.3, 0.4], bih: [1, 0, 0],
      bhh: [0, 0, -0.1])
    let h = stack.forward(inputs: handInputs, image: handImage)
    assertClose(h.array, [0.274504805, 0.113179753], accuracy: 1e-6, "coupled")
  }

  func testGRUHandComputed() {
    // rows r, z, n. Step 1: ax = W_ih x + b_ih + W_iv v = [0.5·2+0.1+0.1, −0.5·2+0+0.2, 1·2+0.2−0.3]
    // = [1.2, −0.8, 1.9]; ah = W_hh·0 + b_hh = [0, 0.1, −0.4];
    // r = σ(1.2) = 0.768524783, z = σ(−0.7) = 0.331812228, n = tanh(1.9 + r·(−0.4)) = 0.920545513;
    // h_1 = (1 − z)·n + z·0 = 0.615097255.
    // Step 2: ax = [−0.3, 0.7, −1.1], ah = W_hh h_1 + b_hh = [0.184529, −0.023019, −0.030942];
    // r = 0.471164327, z = 0.663064454, n = tanh(−1.1 + r·ah_n) = −0.805674904;
    // h_2 = (1 − z)·n + z·h_1 = 0.136388613.
    let stack = RecurrentStack(
      cell: .gru, inputSize: 1, hiddenSize: 1, imageSize: 1, layers: 1, imageInput: .every)
    set(
      stack.layers[0], wih: [0.5, -0.5, 1.0], whh: [0.3, -0.2, 0.6], wiv: [0.1, 0.2, -0.3],
      bih: [0.1, 0, 0.2],
      bhh: [0, 0.1, -0.4])
    let h = stack.forward(inputs: handInputs, image: handImage)
    assertClose(h.array, [0.615097255, 0.136388613], accuracy: 1e-6, "gru")
  }

  func testRNNHandComputed() {
    // H = 2. Step 1: a = W_ih x + W_iv v + b_ih + b_hh = [0.5·2+0.3+0.1+0, −1·2+0.2+0−0.2] = [1.4, −2];
    // h_1 = tanh(a) = [0.885351648, −0.96402758].
    // Step 2: a = [−0.5 + 0.2·h₁₀ − 0.3·h₁₁ + 0.3 + 0.1, 1 + 0.4·h₁₀ + 0.1·h₁₁ + 0.2 − 0.2]
    //   = [0.366279, 1.257738]; h_2 = [0.350732366, 0.85043927].
    let stack = RecurrentStack(
      cell: .rnn, inputSize: 1, hiddenSize: 2, imageSize: 1, layers: 1, imageInput: .every)
    set(
      stack.layers[0], wih: [0.5, -1], whh: [0.2, -0.3, 0.4, 0.1], wiv: [0.3, 0.2], bih: [0.1, 0],
      bhh: [0, -0.2])
    let h = stack.forward(inputs: handInputs, image: handImage)
    assertClose(h.array, [0.885351648, -0.96402758, 0.350732366, 0.85043927], accuracy: 1e-6, "rnn")
  }

  // MARK: Gradients against central finite differences

  /// Σ_t,b,j out·R in Double.
  private func dot(_ out: Tensor, _ weights: Tensor) -> Double {
    var sum = 0.0
    for k in 0..<out.count { sum += Double(out[k]) * Double(weights[k]) }
    return sum
  }

  /// Checks d(Σ h·R)/d(inputs, image, every parameter) for a network `forward` (the loss recomputed
  /// from scratch at every perturbation) against `backward`'s gradients: 24 sampled elements per
  /// tensor, ε = 1e-2, relative error ≤ 2e-2 with floor 5e-3 (so gradients below 5e-3 are held to an
  /// absolute 1e-4); the loss is summed in Double. Why the floor: the forward runs in Float, so the loss
  /// carries ~1e-6 of rounding noise, up to ~1e-4 in a difference quotient at ε = 1e-2 (measured: a GRU
  /// gradient 3.79e-4 read as 4.01e-4 at ε = 1e-2, 3.77e-4 at 0.1), while a larger ε brings truncation
  /// error where a small gradient hides large curvature (an RNN 4.83e-4 read as 4.67e-4 at 1e-2,
  /// 3.22e-4 at 3e-2, −1.3e-3 at 0.1). Injected bugs in the backward passes were seen to fail by far.
  private func checkGradients(
    _ label: String, inputs: Tensor, image: Tensor, parameters: [(String, Parameter)],
    outputShape: [Int], forward: () -> Tensor,
    backward: (Tensor) -> (inputGrad: Tensor, imageGrad: Tensor), file: StaticString = #filePath,
    line: UInt = #line
  ) {
    let epsilon: Float = 1e-2
    let floor = 5e-3
    let weights = randomTensor(outputShape, seed: 99)
    for (_, p) in parameters { p.grad.fill(0) }
    let out = forward()
    XCTAssertEqual(out.shape, outputShape, file: file, line: line)
    let (inputGrad, imageGrad) = backward(weights)
    let dx = inputGrad.clone()
    let dv = imageGrad.clone()
    let loss = { self.dot(forward(), weights) }
    assertGradientMatches(
      "\(label) inputs", x: inputs, analytic: dx, epsilon: epsilon, floor: floor, file: file, line: line,
      loss: loss)
    assertGradientMatches(
      "\(label) image", x: image, analytic: dv, epsilon: epsilon, floor: floor, file: file, line: line,
      loss: loss)
    for (name, p) in parameters {
      assertGradientMatches(
        "\(label) \(name)", x: p.value, analytic: p.grad, epsilon: epsilon, floor: floor, file: file,
        line: line,
        loss: loss)
    }
  }

  func testStackGradientsEveryCellLayersAndImageMode() {
    let (T, B, In, H, Dv) = (3, 2, 4, 3, 2)
    for cell in CellType.allCases {
      for layers in [1, 2] {
        for mode in [ImageInput.every, .first] {
          let stack = RecurrentStack(
            cell: cell, inputSize: In, hiddenSize: H, imageSize: Dv, layers: layers, imageInput: mode)
          var generator = SplitMix64(seed: 11)
          stack.initialize(using: &generator)
          let inputs = randomTensor([T, B, In], seed: 1)
          let image = randomTensor([B, Dv], seed: 2)
          checkGradients(
            "\(cell) layers=\(layers) \(mode)", inputs: inputs, image: image,
            parameters: stack.namedParameters, outputShape: [T, B, H],
            forward: { stack.forward(inputs: inputs, image: image) },
            backward: { stack.backward(outputGrad: $0) })
        }
      }
    }
  }

  func testLayerGradientsWithLengthsBothDirectionsEveryCell() {
    let (T, B, In, H, Dv) = (3, 3, 3, 2, 2)
    for cell in CellType.allCases {
      for (mode, lengths) in [(ImageInput.every, [3, 2, 1] as [Int]?), (.first, [2, 3, 0]), (.first, nil)] {
        for reverse in [false, true] {
          let layer = RecurrentLayer(
            cell: cell, inputSize: In, hiddenSize: H, imageSize: Dv, imageInput: mode, reverse: reverse)
          var generator = SplitMix64(seed: 12)
          layer.initialize(using: &generator)
          let inputs = randomTensor([T, B, In], seed: 3)
          let image = randomTensor([B, Dv], seed: 4)
          checkGradients(
            "\(cell) \(mode) reverse \(reverse) lengths \(lengths.map { "\($0)" } ?? "none")",
            inputs: inputs, image: image, parameters: layer.namedParameters, outputShape: [T, B, H],
            forward: { layer.forward(input: inputs, image: image, lengths: lengths) },
            backward: { layer.backward(outputGrad: $0) })
        }
      }
    }
  }

  // MARK: Parity with PyTorch

  /// One case of `Fixtures/recurrent/parity.json` (written by scripts/recurrent_parity.py).
  private struct ParityCase: Decodable {
    struct Named: Decodable {
      let name: String
      let shape: [Int]
      let value: [Float]
      let grad: [Double]
    }
    let name: String
    let cell: CellType
    let image_input: ImageInput
    let T: Int
    let B: Int
    let input: Int
    let hidden: Int
    let dv: Int
    let layers: Int
    let inputs: [Float]
    let image: [Float]
    let output_weights: [Float]
    let output: [Double]
    let input_grad: [Double]
    let image_grad: [Double]
    let parameters: [Named]
  }

  private struct ParityFile: Decodable { let cases: [ParityCase] }

  func testParityWithPyTorch() throws {
    // Outputs and every gradient (inputs, image, all parameters) of 2-layer stacks of every cell in both
    // image modes against PyTorch in float64 (nn.LSTM, nn.GRU, nn.RNN fed [x ; v], SPEC's equations
    // for peephole and coupled; see the script).
    // Tolerance: |ours − torch| ≤ 1e-5 + 1e-4·|torch| (Float vs float64).
    let data = try Data(contentsOf: URL(fileURLWithPath: fixturePath("recurrent/parity.json")))
    let file = try JSONDecoder().decode(ParityFile.self, from: data)
    XCTAssertEqual(file.cases.count, 10)
    var worst = 0.0
    func compare(_ label: String, _ ours: Tensor, _ expected: [Double]) {
      XCTAssertEqual(ours.count, expected.count, label)
      for (k, e) in expected.enumerated() {
        let error = abs(Double(ours[k]) - e)
        worst = max(worst, error / (1e-5 + 1e-4 * abs(e)))
        if error > 1e-5 + 1e-4 * abs(e) {
          XCTFail("\(label)[\(k)]: \(ours[k]) vs PyTorch \(e)")
          return
        }
      }
    }
    for c in file.cases {
      let inputs = Tensor(shape: [c.T, c.B, c.input], values: c.inputs)
      let image = Tensor(shape: [c.B, c.dv], values: c.image)
      let weights = Tensor(shape: [c.T, c.B, c.hidden], values: c.output_weights)
      let stack = RecurrentStack(
        cell: c.cell, inputSize: c.input, hiddenSize: c.hidden, imageSize: c.dv, layers: c.layers,
        imageInput: c.image_input)
      let named = stack.namedParameters
      let forward = { stack.forward(inputs: inputs, image: image) }
      let backward = { stack.backward(outputGrad: $0) }
      XCTAssertEqual(named.map(\.0), c.parameters.map(\.name), c.name)
      let byName = Dictionary(uniqueKeysWithValues: named)
      for p in c.parameters {
        guard let parameter = byName[p.name] else { continue }
        XCTAssertEqual(parameter.shape, p.shape, "\(c.name) \(p.name)")
        parameter.value.copy(from: Tensor(shape: parameter.shape, values: p.value))
        parameter.grad.fill(0)
      }
      compare("\(c.name) output", forward(), c.output)
      let (dx, dv) = backward(weights)
      compare("\(c.name) input grad", dx, c.input_grad)
      compare("\(c.name) image grad", dv, c.image_grad)
      for p in c.parameters {
        if let parameter = byName[p.name] { compare("\(c.name) \(p.name) grad", parameter.grad, p.grad) }
      }
    }
    print("RecurrentTests parity: worst error / tolerance = \(worst)")
  }

  // MARK: Step API, reverse direction, lengths

  func testStepMatchesSequenceForwardForEveryCell() {
    // B = 3 takes the step's small-row kernel, B = maxRows + 1 OpenBLAS (BLAS.linear).
    let (T, In, H, Dv) = (4, 5, 6, 4)
    let large = SmallGemm.maxRows + 1
    for cell in CellType.allCases {
      for (mode, B) in [(ImageInput.every, 3), (.first, 3), (.every, large), (.first, large)] {
        let stack = RecurrentStack(
          cell: cell, inputSize: In, hiddenSize: H, imageSize: Dv, layers: 2, imageInput: mode)
        var generator = SplitMix64(seed: 21)
        stack.initialize(using: &generator)
        let inputs = randomTensor([T, B, In], seed: 5)
        let image = randomTensor([B, Dv], seed: 6)
        let sequence = stack.forward(inputs: inputs, image: image).clone()
        var state = stack.makeState(image: image)
        for t in 0..<T {
          let x = Tensor(zeros: [B, In])
          x.copy(from: inputs.view(offset: t * B * In, shape: [B, In]))
          let h = stack.step(input: x, state: &state)
          assertClose(
            h.array, sequence.view(offset: t * B * H, shape: [B, H]).array, accuracy: 1e-6,
            "\(cell) \(mode) B=\(B) step \(t)")
        }
        XCTAssertEqual(state.t, T)
      }
    }
  }

  func testGatheredRowsReorderAndContinue() {
    let (B, In, H, Dv) = (3, 2, 4, 3)
    for cell in [CellType.lstm, .gru] {
      let stack = RecurrentStack(
        cell: cell, inputSize: In, hiddenSize: H, imageSize: Dv, layers: 2, imageInput: .first)
      var generator = SplitMix64(seed: 31)
      stack.initialize(using: &generator)
      let image = randomTensor([B, Dv], seed: 7)
      var state = stack.makeState(image: image)
      stack.step(input: randomTensor([B, In], seed: 8), state: &state)
      let order = [2, 0, 0, 1]
      var picked = state.gathered(rows: order)
      XCTAssertEqual(picked.rows, 4)
      XCTAssertEqual(picked.t, 1)
      for l in 0..<2 {
        for (r, source) in order.enumerated() {
          XCTAssertEqual(
            picked.h[l].view(offset: r * H, shape: [H]).array,
            state.h[l].view(offset: source * H, shape: [H]).array)
          if cell == .lstm {
            XCTAssertEqual(
              picked.c[l]!.view(offset: r * H, shape: [H]).array,
              state.c[l]!.view(offset: source * H, shape: [H]).array)
          } else {
            XCTAssertNil(picked.c[l])
          }
          let gh = stack.layers[l].gateWidth
          XCTAssertEqual(
            picked.imageProjection[l].view(offset: r * gh, shape: [gh]).array,
            state.imageProjection[l].view(offset: source * gh, shape: [gh]).array)
        }
      }
      // continuing from the gathered state equals continuing the original rows
      let next = randomTensor([B, In], seed: 9)
      let nextPicked = Tensor(zeros: [4, In])
      for (r, source) in order.enumerated() {
        (nextPicked.pointer + r * In).update(from: next.pointer + source * In, count: In)
      }
      let hPicked = stack.step(input: nextPicked, state: &picked).clone()
      let hOriginal = stack.step(input: next, state: &state)
      for (r, source) in order.enumerated() {
        assertClose(
          hPicked.view(offset: r * H, shape: [H]).array, hOriginal.view(offset: source * H, shape: [H]).array,
          accuracy: 1e-6, "\(cell) gathered row \(r)")
      }
    }
  }

  func testReverseLayerEqualsForwardLayerOnReversedInput() {
    let (T, B, In, H, Dv) = (4, 2, 3, 3, 2)
    for cell in CellType.allCases {
      for mode in [ImageInput.every, .first] {
        let forwardLayer = RecurrentLayer(
          cell: cell, inputSize: In, hiddenSize: H, imageSize: Dv, imageInput: mode)
        let reverseLayer = RecurrentLayer(
          cell: cell, inputSize: In, hiddenSize: H, imageSize: Dv, imageInput: mode, reverse: true)
        var generator = SplitMix64(seed: 41)
        forwardLayer.initialize(using: &generator)
        for ((_, p), (_, q)) in zip(forwardLayer.namedParameters, reverseLayer.namedParameters) {
          q.value.copy(from: p.value)
        }
        let inputs = randomTensor([T, B, In], seed: 10)
        let reversed = Tensor(zeros: [T, B, In])
        for t in 0..<T {
          (reversed.pointer + t * B * In).update(from: inputs.pointer + (T - 1 - t) * B * In, count: B * In)
        }
        let image = randomTensor([B, Dv], seed: 11)
        let hReverse = reverseLayer.forward(input: inputs, image: image).clone()
        let hForward = forwardLayer.forward(input: reversed, image: image)
        for t in 0..<T {
          assertClose(
            hReverse.view(offset: t * B * H, shape: [B * H]).array,
            hForward.view(offset: (T - 1 - t) * B * H, shape: [B * H]).array, accuracy: 1e-6,
            "\(cell) \(mode) t=\(t)")
        }
      }
    }
  }

  func testLayerLengthsEqualUnpaddedSequenceBothDirections() {
    // Row 1 has length 2 of T = 4: its outputs equal those of the 2-step sequence alone (the
    // reverse direction starting at its last real step), and are zero at the padding.
    let (T, B, In, H, Dv) = (4, 2, 3, 2, 2)
    for cell in CellType.allCases {
      for mode in [ImageInput.every, .first] {
        for reverse in [false, true] {
          let layer = RecurrentLayer(
            cell: cell, inputSize: In, hiddenSize: H, imageSize: Dv, imageInput: mode, reverse: reverse)
          var generator = SplitMix64(seed: 51)
          layer.initialize(using: &generator)
          let inputs = randomTensor([T, B, In], seed: 12)
          let image = randomTensor([B, Dv], seed: 13)
          let padded = layer.forward(input: inputs, image: image, lengths: [4, 2]).clone()
          let alone = Tensor(zeros: [2, 1, In])
          for t in 0..<2 {
            (alone.pointer + t * In).update(from: inputs.pointer + (t * B + 1) * In, count: In)
          }
          let imageAlone = Tensor(shape: [1, Dv], values: Array(image.array[Dv..<(2 * Dv)]))
          let short = layer.forward(input: alone, image: imageAlone)
          for t in 0..<T {
            let row = padded.view(offset: (t * B + 1) * H, shape: [H]).array
            let expected =
              t < 2 ? short.view(offset: t * H, shape: [H]).array : [Float](repeating: 0, count: H)
            assertClose(row, expected, accuracy: 1e-6, "\(cell) \(mode) reverse \(reverse) t=\(t)")
          }
        }
      }
    }
  }

  func testEmptySequenceAndBatch() {
    // T = 0 or B = 0: empty outputs and gradients, no trap; parameter gradients untouched.
    for cell in CellType.allCases {
      let stack = RecurrentStack(
        cell: cell, inputSize: 3, hiddenSize: 2, imageSize: 2, layers: 2, imageInput: .first)
      for (T, B) in [(0, 2), (3, 0)] {
        let out = stack.forward(inputs: Tensor(zeros: [T, B, 3]), image: Tensor(zeros: [B, 2]))
        XCTAssertEqual(out.shape, [T, B, 2])
        let (dx, dv) = stack.backward(outputGrad: Tensor(zeros: [T, B, 2]))
        XCTAssertEqual(dx.shape, [T, B, 3])
        XCTAssertEqual(dv.shape, [B, 2])
        XCTAssertTrue(stack.namedParameters.allSatisfy { $0.1.grad.array.allSatisfy { $0 == 0 } })
      }
    }
  }

  // MARK: Activations, initialisation and names

  func testFastTanhMatchesLibm() {
    // The exp-based tanh against glibc's tanhf: absolute error ≤ 5e-7 over [−20, 20], relative
    // error ≤ 1e-6 near 0 (the Taylor branch), exact saturation, NaN propagated.
    var worstAbsolute: Float = 0
    var worstRelative: Float = 0
    for k in -200_000...200_000 {
      let x = Float(k) * 1e-4
      let exact = Foundation.tanh(x)
      let fast = Activation.tanh(x)
      worstAbsolute = max(worstAbsolute, abs(fast - exact))
      if abs(x) < 0.5 && x != 0 { worstRelative = max(worstRelative, abs(fast - exact) / abs(exact)) }
    }
    XCTAssertLessThanOrEqual(worstAbsolute, 5e-7)
    XCTAssertLessThanOrEqual(worstRelative, 1e-6)
    XCTAssertEqual(Activation.tanh(1e-20), 1e-20)
    XCTAssertEqual(Activation.tanh(100), 1)
    XCTAssertEqual(Activation.tanh(-100), -1)
    XCTAssertEqual(Activation.tanh(.infinity), 1)
    XCTAssertTrue(Activation.tanh(.nan).isNaN)
    XCTAssertEqual(Activation.sigmoid(0), 0.5)
    XCTAssertEqual(Activation.sigmoid(-200), 0)
  }

  func testInitializationAndNames() {
    let H = 16
    var generator = SplitMix64(seed: 61)
    for cell in CellType.allCases {
      let stack = RecurrentStack(
        cell: cell, inputSize: 8, hiddenSize: H, imageSize: 5, layers: 2, imageInput: .every)
      stack.initialize(using: &generator)
      var expected = ["weight_ih", "weight_hh", "weight_iv", "bias_ih", "bias_hh"]
      if cell == .peephole { expected.append("weight_peep") }
      XCTAssertEqual(stack.namedParameters.map(\.0), expected.map { "0.\($0)" } + expected.map { "1.\($0)" })
      let shapes = Dictionary(uniqueKeysWithValues: stack.namedParameters.map { ($0.0, $0.1.shape) })
      let gh = cell.gates * H
      XCTAssertEqual(shapes["0.weight_ih"], [gh, 8])
      XCTAssertEqual(shapes["1.weight_ih"], [gh, H])
      XCTAssertEqual(shapes["1.weight_hh"], [gh, H])
      XCTAssertEqual(shapes["0.weight_iv"], [gh, 5])
      XCTAssertEqual(shapes["0.bias_hh"], [gh])
      if cell == .peephole { XCTAssertEqual(shapes["0.weight_peep"], [3, H]) }
      let bound = 1 / Float(H).squareRoot()
      let forget: Int? = [CellType.lstm: 1, .peephole: 1, .coupled: 0][cell]
      for layer in stack.layers {
        for (name, p) in layer.namedParameters {
          for k in 0..<p.value.count {
            let inForget = forget != nil && (name == "bias_ih" || name == "bias_hh") && k / H == forget!
            if inForget {
              XCTAssertEqual(p.value[k], name == "bias_ih" ? 1 : 0, "\(cell) \(name)[\(k)]")
            } else {
              XCTAssertLessThanOrEqual(abs(p.value[k]), bound, "\(cell) \(name)[\(k)]")
            }
          }
        }
        XCTAssertGreaterThan(Set(layer.weightHH.value.array).count, layer.weightHH.value.count / 2)
      }
    }
  }
}
