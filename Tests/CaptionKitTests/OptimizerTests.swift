import Foundation
import XCTest

@testable import CaptionKit

final class OptimizerTests: XCTestCase {
  func testAdamTwoStepsMatchHandComputation() {
    // p = 1, lr = 0.1, β = (0.9, 0.999), ε = 1e-8; g₁ = 0.5, g₂ = −0.25.
    // t=1: m = 0.05, v = 0.00025, m̂ = 0.5, v̂ = 0.25 → p = 1 − 0.1·0.5/(0.5 + 1e-8) = 0.900000002
    // t=2: m = 0.02, v = 0.00031225, m̂ = 0.02/0.19, v̂ = 0.00031225/0.001999 → p = 0.8733662987
    let p = Parameter(name: "p", shape: [1])
    p.value[0] = 1
    let adam = Adam(parameters: [p], learningRate: 0.1)
    p.grad[0] = 0.5
    adam.step()
    XCTAssertEqual(p.value[0], 0.9, accuracy: 1e-6)
    p.grad[0] = -0.25
    adam.step(learningRate: 0.1)
    XCTAssertEqual(p.value[0], 0.873_366_3, accuracy: 1e-6)
    XCTAssertEqual(adam.stepCount, 2)
    XCTAssertEqual(adam.moments[0].m[0], 0.02, accuracy: 1e-7)
    XCTAssertEqual(adam.moments[0].v[0], 0.000_312_25, accuracy: 1e-8)
  }

  func testAdamWDecaysDecoupledFromTheGradient() {
    // Zero gradient: the Adam term is 0, only p ← p·(1 − lr·λ) = 2·(1 − 0.1·0.5) = 1.9.
    let p = Parameter(name: "p", shape: [1])
    p.value[0] = 2
    let adam = Adam(parameters: [p], learningRate: 0.1, weightDecay: 0.5)
    adam.step()
    XCTAssertEqual(p.value[0], 1.9, accuracy: 1e-6)
  }

  func testAdamResumesExactlyFromSavedMoments() {
    let a = Parameter(name: "a", shape: [3])
    let b = Parameter(name: "b", shape: [3])
    a.value.copy(from: Tensor(shape: [3], values: [1, -2, 3]))
    b.value.copy(from: a.value)
    let adamA = Adam(parameters: [a], learningRate: 0.01)
    let gradients: [[Float]] = [[0.1, 0.2, -0.3], [0.5, -0.1, 0.0], [-0.2, 0.3, 0.4]]
    for g in gradients {
      a.grad.copy(from: Tensor(shape: [3], values: g))
      adamA.step()
    }
    // b: two steps, "save", restore into a fresh optimiser, then the third.
    let first = Adam(parameters: [b], learningRate: 0.01)
    for g in gradients.prefix(2) {
      b.grad.copy(from: Tensor(shape: [3], values: g))
      first.step()
    }
    let resumed = Adam(parameters: [b], learningRate: 0.01)
    resumed.stepCount = first.stepCount
    resumed.moments[0].m.copy(from: first.moments[0].m)
    resumed.moments[0].v.copy(from: first.moments[0].v)
    b.grad.copy(from: Tensor(shape: [3], values: gradients[2]))
    resumed.step()
    XCTAssertEqual(a.value.array, b.value.array)
  }

  func testClipGradientNorm() {
    let a = Parameter(name: "a", shape: [2])
    let b = Parameter(name: "b", shape: [1])
    a.grad.copy(from: Tensor(shape: [2], values: [3, 4]))
    b.grad[0] = 12
    // Norm √(9 + 16 + 144) = 13 ≤ 20: unchanged.
    XCTAssertEqual(clipGradientNorm([a, b], maxNorm: 20), 13, accuracy: 1e-5)
    XCTAssertEqual(a.grad.array + b.grad.array, [3, 4, 12])
    // Clip to 6.5: every gradient halves.
    XCTAssertEqual(clipGradientNorm([a, b], maxNorm: 6.5), 13, accuracy: 1e-5)
    for (x, y) in zip(a.grad.array + b.grad.array, [Float(1.5), 2, 6]) {
      XCTAssertEqual(x, y, accuracy: 1e-5)
    }
    XCTAssertEqual(clipGradientNorm([a, b], maxNorm: 100), 6.5, accuracy: 1e-5)
    // A non-finite norm is reported and nothing is scaled.
    b.grad[0] = .nan
    XCTAssertTrue(clipGradientNorm([a, b], maxNorm: 1).isNaN)
    XCTAssertEqual(a.grad[0], 1.5, accuracy: 1e-5)
    zeroGradients([a, b])
    XCTAssertEqual(a.grad.array + b.grad.array, [0, 0, 0])
  }

  /// Adam on a small Linear + cross-entropy problem drives the loss down (the pieces work together).
  func testAdamTrainsALinearClassifier() {
    let linear = Linear(inFeatures: 4, outFeatures: 3)
    var generator = SeededGenerator(seed: 1)
    linear.initialize(using: &generator)
    let inputs = randomTensor([6, 4], seed: 2)
    let targets = [0, 1, 2, 0, 1, 2]
    let loss = SoftmaxCrossEntropy()
    let adam = Adam(parameters: linear.parameters, learningRate: 0.1)
    var first: Float = 0
    var last: Float = 0
    for step in 0..<200 {
      zeroGradients(linear.parameters)
      let value = loss.forward(logits: linear.forward(inputs), targets: targets, ignoreIndex: -1)
      if step == 0 { first = value }
      last = value
      linear.backward(loss.backward(), needInputGrad: false)
      adam.step()
    }
    XCTAssertGreaterThan(first, 0.5)
    XCTAssertLessThan(last, 0.05)
  }
}
