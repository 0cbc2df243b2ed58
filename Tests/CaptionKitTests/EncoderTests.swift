import Foundation
import XCTest

@testable import CaptionKit

final class EncoderTests: XCTestCase {
  private func makeEncoder(
    imageSize: Int, layers: [EncoderLayer], dv: Int, pool: PoolMode, seed: UInt64 = 5
  ) -> Encoder {
    let config = ModelConfig(imageSize: imageSize, layers: layers, dv: dv, vocabSize: 10, pool: pool)
    let encoder = Encoder(config: config)
    var generator = SeededGenerator(seed: seed)
    encoder.initialize(using: &generator)
    // Non-zero conv biases so their gradients are exercised in a non-trivial spot.
    for conv in encoder.convolutions {
      Initialization.uniform(conv.bias.value, bound: 0.1, using: &generator)
    }
    return encoder
  }

  func testNamedParametersFollowTheSpec() {
    let layers: [EncoderLayer] = [.conv(4), .maxPool, .conv(6), .conv(5), .maxPool]
    let avg = makeEncoder(imageSize: 9, layers: layers, dv: 7, pool: .avg)
    let names = avg.namedParameters.map { $0.0 }
    XCTAssertEqual(
      names,
      [
        "conv0.weight", "conv0.bias", "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight",
        "fc.bias",
      ])
    let shapes = avg.namedParameters.map { $0.1.shape }
    XCTAssertEqual(shapes, [[4, 3, 3, 3], [4], [6, 4, 3, 3], [6], [5, 6, 3, 3], [5], [7, 5], [7]])
    // 9 → 4 → 2: flatten feeds 5·2·2 = 20 features.
    let flatten = makeEncoder(imageSize: 9, layers: layers, dv: 7, pool: .flatten)
    XCTAssertEqual(flatten.fc.weight.shape, [7, 20])
    XCTAssertEqual(flatten.forward(randomTensor([2, 3, 9, 9], seed: 1)).shape, [2, 7])
  }

  /// The flatten path against a hand-assembled pipeline: conv reference → pool → (C, H, W) order → fc.
  func testFlattenOrderIsPyTorchFlatten() {
    let encoder = makeEncoder(imageSize: 4, layers: [.conv(2), .maxPool], dv: 3, pool: .flatten)
    let images = randomTensor([2, 3, 4, 4], seed: 9)
    let conv = encoder.convolutions[0]
    let features = referenceConvolution(
      input: images, weight: conv.weight.value, bias: conv.bias.value, relu: true)
    let v = encoder.forward(images)
    for b in 0..<2 {
      for d in 0..<3 {
        var sum = Double(encoder.fc.bias.value[d])
        for c in 0..<2 {
          for y in 0..<2 {
            for x in 0..<2 {
              var m = -Float.infinity
              for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                m = max(m, features[((b * 2 + c) * 4 + 2 * y + dy) * 4 + 2 * x + dx])
              }
              let flatIndex = (c * 2 + y) * 2 + x
              sum += Double(encoder.fc.weight.value[d * 8 + flatIndex]) * Double(m)
            }
          }
        }
        XCTAssertEqual(v[b * 3 + d], Float(sum), accuracy: 1e-5)
      }
    }
  }

  /// The activation pattern of every ReLU and max-pool of the encoder's last forward (a max-pool
  /// fused into its conv: the conv's mask, which marks each window's output).
  private func pattern(_ encoder: Encoder) -> [Int32] {
    var result: [Int32] = []
    let fused = encoder.fusedPools
    for (index, stage) in encoder.stages.enumerated() {
      switch stage {
      case .conv(let conv):
        result += positivePattern(conv.lastOutput!)
        if fused.contains(index + 1) {
          result += conv.reluMaskWorkspace!.array.map { Int32(bitPattern: $0.bitPattern) }
        }
      case .maxPool(let pool): if !fused.contains(index) { result += pool.argmax }
      }
    }
    return result
  }

  /// Loss Σ v ⊙ R; gradients wrt the images and a sample of every parameter tensor, by central
  /// differences: ε = 1e-3, loss in Double, relative error |a − n| / max(|a| + |n|, 1e-2) ≤ 1e-2 (so
  /// gradients below ~5e-3 are held to 1e-4 absolute, the Float forward's rounding noise / 2ε),
  /// kinks handled as `assertGradientMatchesAwayFromKinks` says.
  private func checkEncoderGradients(pool: PoolMode, imageSize: Int, layers: [EncoderLayer]) {
    let encoder = makeEncoder(imageSize: imageSize, layers: layers, dv: 5, pool: pool)
    let images = randomTensor([2, 3, imageSize, imageSize], seed: 17)
    let projection = randomTensor([2, 5], seed: 99)
    zeroGradients(encoder.parameters)
    _ = encoder.forward(images)
    let imageGrad = encoder.backward(projection, needInputGrad: true)!.clone()
    let evaluate = { () -> (loss: Double, pattern: [Int32]) in
      let v = encoder.forward(images)
      return (dot(v, projection), self.pattern(encoder))
    }
    assertGradientMatchesAwayFromKinks(
      "encoder \(pool) images", x: images, analytic: imageGrad, floor: 1e-2, evaluate: evaluate)
    for (name, parameter) in encoder.namedParameters {
      assertGradientMatchesAwayFromKinks(
        "encoder \(pool) \(name)", x: parameter.value, analytic: parameter.grad.clone(), floor: 1e-2,
        evaluate: evaluate)
    }
  }

  func testAvgPoolEncoderGradientsMatchFiniteDifferences() {
    checkEncoderGradients(
      pool: .avg, imageSize: 8, layers: [.conv(4), .maxPool, .conv(5), .conv(3), .maxPool])
  }

  /// Maps of 12 px and more with 8 channels: the second conv runs the max-pool after it inside.
  func testFusedPoolEncoderGradientsMatchFiniteDifferences() {
    let layers: [EncoderLayer] = [.conv(8), .conv(8), .maxPool, .conv(4)]
    XCTAssertEqual(makeEncoder(imageSize: 12, layers: layers, dv: 5, pool: .avg).fusedPools, [2])
    checkEncoderGradients(pool: .avg, imageSize: 12, layers: layers)
  }

  /// The convs that run the max-pool after them inside (F(4×4) maps, even sizes) change nothing but
  /// the work: against the same encoder with that turned off, the same v, block means and
  /// gradients, bit for bit, keeping the activations or passing them through two buffers, on two
  /// threads. 24 px: conv1 (8 → 8, 24 px) and conv2 (8 → 16, 12 px) fuse their pools; conv3 (6 px,
  /// F(2×2)) and conv0 (3 input channels, direct) do not.
  func testFusedMaxPoolsChangeNothingButTheWork() {
    BLAS.setThreads(2)
    defer { BLAS.setThreads(1) }
    let layers: [EncoderLayer] = [.conv(8), .conv(8), .maxPool, .conv(16), .maxPool, .conv(8), .maxPool]
    let fused = makeEncoder(imageSize: 24, layers: layers, dv: 6, pool: .avg)
    let apart = makeEncoder(imageSize: 24, layers: layers, dv: 6, pool: .avg)
    for conv in apart.convolutions { conv.poolFusion = false }
    XCTAssertEqual(fused.fusedPools, [2, 4])
    XCTAssertEqual(apart.fusedPools, [])
    let images = randomTensor([3, 3, 24, 24], seed: 8)
    let vGrad = randomTensor([3, 6], seed: 9)
    for encoder in [fused, apart] { zeroGradients(encoder.parameters) }
    let v = fused.forward(images).array
    XCTAssertEqual(v, apart.forward(images).array)
    XCTAssertEqual(fused.blockMeans.array, apart.blockMeans.array)
    XCTAssertEqual(
      fused.backward(vGrad, needInputGrad: true)!.array, apart.backward(vGrad, needInputGrad: true)!.array)
    for (a, b) in zip(fused.parameters, apart.parameters) {
      XCTAssertEqual(a.grad.array, b.grad.array, a.name)
      XCTAssertGreaterThan(a.grad.array.map(abs).max() ?? 0, 0, a.name)
    }
    // Through the two shared buffers (inference).
    XCTAssertEqual(fused.forward(images, keepActivations: false).array, v)
    XCTAssertEqual(apart.forward(images, keepActivations: false).array, v)
  }

  func testFlattenEncoderGradientsMatchFiniteDifferences() {
    checkEncoderGradients(pool: .flatten, imageSize: 7, layers: [.conv(3), .maxPool, .conv(4), .maxPool])
  }

  func testBackwardWithoutImageGradientAccumulatesTheSameParameterGradients() {
    let encoder = makeEncoder(imageSize: 6, layers: [.conv(3), .maxPool, .conv(4)], dv: 4, pool: .avg)
    let images = randomTensor([2, 3, 6, 6], seed: 3)
    let vGrad = randomTensor([2, 4], seed: 4)
    _ = encoder.forward(images)
    zeroGradients(encoder.parameters)
    XCTAssertNotNil(encoder.backward(vGrad, needInputGrad: true))
    let withImage = encoder.parameters.map { $0.grad.clone() }
    zeroGradients(encoder.parameters)
    encoder.backward(vGrad)
    // Without the image gradient the first layer takes the direct weight-gradient kernel (its own
    // summation order, tested against the Double reference in ConvKernelTests), so equal up to
    // rounding: 1e-5 relative L2.
    for (a, b) in zip(encoder.parameters, withImage) {
      let (x, y) = (a.grad.array, b.array)
      let difference = zip(x, y).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
      let norm = y.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
      XCTAssertLessThanOrEqual(difference, 1e-5 * max(norm, 1e-30), "\(a.name)")
    }
  }

  func testForwardReusesWorkspaces() {
    let encoder = makeEncoder(imageSize: 8, layers: [.conv(3), .maxPool], dv: 4, pool: .flatten)
    let a = encoder.forward(randomTensor([2, 3, 8, 8], seed: 1))
    let aValues = a.array
    let b = encoder.forward(randomTensor([2, 3, 8, 8], seed: 2))
    XCTAssertTrue(a === b)
    XCTAssertNotEqual(aValues, b.array)
    XCTAssertEqual(encoder.forward(randomTensor([3, 3, 8, 8], seed: 1)).shape, [3, 4])
  }
}

extension EncoderTests {
  /// An inference pass (two shared buffers) gives bitwise the features of a pass that keeps every
  /// stage's output, through both convolution algorithms, pools of odd sizes and a change of batch;
  /// and a training pass after it still gets the gradients of a fresh encoder.
  /// Fixed weights keep every layer's Winograd transform in one shared storage (F(4×4) and
  /// F(2×2) layers, the direct first layer taking none): the same features as transforms of their
  /// own, bit for bit, pass after pass.
  func testFixedWeightsShareOneStorageAndChangeNothing() {
    let c = Conv2D.winogradMinChannels
    let layers: [EncoderLayer] = [.conv(c), .conv(c), .maxPool, .conv(2 * c), .maxPool, .conv(c)]
    let fixed = makeEncoder(imageSize: 24, layers: layers, dv: 6, pool: .avg)
    let own = makeEncoder(imageSize: 24, layers: layers, dv: 6, pool: .avg)
    fixed.fixWeights()
    let images = randomTensor([2, 3, 24, 24], seed: 3)
    let expected = own.forward(images, keepActivations: false).array
    for _ in 0..<2 { XCTAssertEqual(fixed.forward(images, keepActivations: false).array, expected) }
    let winograd = fixed.convolutions.filter { $0.algorithm == .winograd }
    XCTAssertEqual(winograd.count, 3)
    XCTAssertEqual(Set(winograd.flatMap { $0.transforms.keys }), [2, 4], "both tiles")
    let storages = Set(winograd.map { ObjectIdentifier($0.transformStorage!) })
    XCTAssertEqual(storages.count, 1)
    XCTAssertTrue(fixed.convolutions[0].transforms.isEmpty, "the direct first layer")
  }

  /// The transforms computed ahead, on the calling thread alone, are the ones a first pass
  /// computes on the compute threads (two here, sharing the 256-channel layers' kernels out), at
  /// each layer's tile (F(4×4) at 24 and 12 px, F(2×2) at 6); a pass after them keeps them and
  /// gives the same features.
  func testTransformsComputedAheadAreTheFirstPasssOwn() {
    let threads = BLAS.threads
    BLAS.setThreads(2)
    defer { BLAS.setThreads(threads) }
    let c = Conv2D.winogradMinChannels
    let layers: [EncoderLayer] = [.conv(c), .conv(256), .maxPool, .conv(c), .maxPool, .conv(c)]
    let ahead = makeEncoder(imageSize: 24, layers: layers, dv: 6, pool: .avg)
    let firstPass = makeEncoder(imageSize: 24, layers: layers, dv: 6, pool: .avg)
    ahead.fixWeights()
    firstPass.fixWeights()
    ahead.computeFixedTransforms()
    let computed = ahead.convolutions.map(\.transforms)
    XCTAssertEqual(computed.map { $0.keys.sorted() }, [[], [4], [4], [2]])
    let images = randomTensor([1, 3, 24, 24], seed: 6)
    let expected = firstPass.forward(images, keepActivations: false).array
    for (mine, theirs) in zip(computed, firstPass.convolutions.map(\.transforms)) {
      XCTAssertEqual(Set(mine.keys), Set(theirs.keys))
      for (tile, u) in theirs { XCTAssertEqual(mine[tile]!.array, u.array, "tile \(tile)") }
    }
    XCTAssertEqual(ahead.forward(images, keepActivations: false).array, expected)
    for (conv, before) in zip(ahead.convolutions, computed) {
      XCTAssertEqual(conv.transforms.count, before.count)
      for (tile, u) in before { XCTAssertTrue(conv.transforms[tile]! === u, "kept, tile \(tile)") }
    }
  }

  /// An inference pass sizes the shared kernel scratch once, for its largest layer (here the
  /// direct first layer's, F(4×4)'s and F(2×2)'s scratch all differ), and the layers' own
  /// requests then never grow it.
  func testInferenceReservesTheKernelScratchOnce() {
    let c = Conv2D.winogradMinChannels
    let layers: [EncoderLayer] = [.conv(c), .conv(c), .maxPool, .conv(4 * c), .maxPool, .conv(2 * c)]
    let encoder = makeEncoder(imageSize: 24, layers: layers, dv: 6, pool: .avg)
    let scratch = encoder.convolutions[0].scratch
    XCTAssertTrue(encoder.convolutions.allSatisfy { $0.scratch === scratch })
    let sizes = [(24, 24), (24, 24), (12, 12), (6, 6)]
    let needs = zip(encoder.convolutions, sizes).map {
      $0.forwardScratchCount(batch: 1, height: $1.0, width: $1.1)
    }
    XCTAssertEqual(Set(needs).count, needs.count, "every layer a different size: \(needs)")
    let images = randomTensor([1, 3, 24, 24], seed: 4)
    let expected = makeEncoder(imageSize: 24, layers: layers, dv: 6, pool: .avg).forward(images).array
    XCTAssertEqual(encoder.forward(images, keepActivations: false).array, expected)
    XCTAssertEqual(scratch.capacity(.kernel), needs.max())
    XCTAssertEqual(scratch.allocations[ConvScratch.Slot.kernel.rawValue], 1)
    XCTAssertEqual(encoder.forward(images, keepActivations: false).array, expected)
    XCTAssertEqual(scratch.allocations[ConvScratch.Slot.kernel.rawValue], 1)
  }

  func testArenaViewsAreAlignedAndBounded() {
    let arena = TensorArena(count: 100)
    let a = arena.nextView(shape: [3, 5])!
    let b = arena.nextView(shape: [2, 10])!
    XCTAssertEqual(Int(bitPattern: a.pointer) % Tensor.alignment, 0)
    XCTAssertEqual(
      Int(bitPattern: b.pointer) - Int(bitPattern: a.pointer), 16 * 4, "15 floats round up to 16")
    XCTAssertEqual(b.array, [Float](repeating: 0, count: 20))
    XCTAssertNil(arena.nextView(shape: [53]), "past the end")
    XCTAssertNotNil(arena.nextView(shape: [52]), "the rest")
  }

  func testInferencePassMatchesTheKeepingPass() {
    let layers: [EncoderLayer] = [
      .conv(4), .maxPool, .conv(Conv2D.winogradMinChannels), .conv(6), .maxPool, .conv(5),
    ]
    checkInferencePass(imageSize: 11, layers: layers, features: [5, 2, 2]) { encoder in
      XCTAssertTrue(encoder.convolutions.contains { $0.algorithm == .winograd })
      XCTAssertTrue(encoder.convolutions.contains { $0.algorithm == .im2col })
    }
  }

  /// The same through F(4×4) with the ReLU and a fused max-pool, whose inference pass writes no
  /// ReLU mask (nor does the direct first layer's): the training pass after it writes its own.
  func testInferencePassWithoutTheMaskThenTraining() {
    let layers: [EncoderLayer] = [.conv(4), .conv(Conv2D.winogradMinChannels), .maxPool, .conv(5)]
    checkInferencePass(imageSize: 16, layers: layers, features: [5, 8, 8]) { encoder in
      XCTAssertTrue(
        encoder.convolutions.contains {
          $0.algorithm == .winograd && $0.winogradTile(height: 16, width: 16) == 4
        })
    }
  }

  private func checkInferencePass(
    imageSize: Int, layers: [EncoderLayer], features: [Int], algorithms: (Encoder) -> Void
  ) {
    let reference = makeEncoder(imageSize: imageSize, layers: layers, dv: 3, pool: .flatten)
    let encoder = makeEncoder(imageSize: imageSize, layers: layers, dv: 3, pool: .flatten)
    algorithms(encoder)
    for (batch, seed) in [(2, 1), (3, 2), (2, 3)] as [(Int, UInt64)] {
      let images = randomTensor([batch, 3, imageSize, imageSize], seed: seed)
      let kept = reference.features(images).array
      let shared = encoder.features(images, keepActivations: false)
      XCTAssertEqual(shared.shape, [batch] + features)
      XCTAssertEqual(shared.array, kept, "batch \(batch)")
      XCTAssertEqual(
        encoder.forward(images, keepActivations: false).array, reference.forward(images).array)
    }
    let images = randomTensor([2, 3, imageSize, imageSize], seed: 4)
    let vGrad = randomTensor([2, 3], seed: 5)
    for model in [reference, encoder] {
      _ = model.forward(images)
      zeroGradients(model.parameters)
      _ = model.backward(vGrad, needInputGrad: true)
    }
    for (a, b) in zip(encoder.parameters, reference.parameters) {
      XCTAssertEqual(a.grad.array, b.grad.array, a.name)
    }
  }
}
