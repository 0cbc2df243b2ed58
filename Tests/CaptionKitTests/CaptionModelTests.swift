import XCTest

@testable import CaptionKit

/// The whole network (encoder + decoder + loss) for every cell: gradients against finite differences
/// and a tiny model overfitting one batch.
final class CaptionModelTests: XCTestCase {
  func tinyConfig(_ cell: CellType, layers: Int = 1, input: ImageInput = .every, pool: PoolMode = .avg)
    -> ModelConfig
  {
    ModelConfig(
      imageSize: 6, layers: [.conv(3), .maxPool, .conv(4)], dv: 4, embed: 4, hidden: 5, cell: cell,
      rnnLayers: layers, vocabSize: 9, imageInput: input, pool: pool)
  }

  /// Two images, two captions each (K = 2), time-major tokens with padding.
  func batch() -> (images: Tensor, inputs: [Int], targets: [Int], steps: Int) {
    let images = randomTensor([2, 3, 6, 6], scale: 1, seed: 11)
    let captions = [[4, 5, 6], [7, 4], [8, 8, 5, 4], [6]]
    let layout = TrainingBatch.tokenLayout(captions)
    return (images, layout.input, layout.target, layout.steps)
  }

  /// Bound: relative error |a − n| / max(|a| + |n|, 1e-3) ≤ 2e-2 with ε = 1e-2 (central differences
  /// of a Float loss near 2; Float rounding alone contributes ~1e-5 relative).
  func testFullModelGradientsMatchFiniteDifferences() {
    let configs: [ModelConfig] =
      CellType.allCases.map { tinyConfig($0) } + [
        tinyConfig(.lstm, layers: 2, input: .first, pool: .flatten),
        tinyConfig(.gru, layers: 2, input: .first, pool: .flatten),
      ]
    for config in configs {
      let model = CaptionModel(config: config)
      var generator = SeededGenerator(seed: 5)
      model.initialize(using: &generator)
      let (images, inputs, targets, steps) = batch()
      func loss() -> Double {
        var unused = SeededGenerator(seed: 0)
        return Double(
          model.forward(
            images: images, captionsPerImage: 2, steps: steps, inputTokens: inputs, targetTokens: targets,
            training: false, generator: &unused))
      }
      zeroGradients(model.parameters)
      _ = loss()
      let imageGrad = model.backward(imageGrad: true)!.clone()
      let label =
        "\(config.cell.rawValue) ×\(config.rnnLayers) \(config.imageInput.rawValue) \(config.pool.rawValue)"
      for (name, parameter) in model.namedParameters {
        let analytic = parameter.grad.clone()
        assertGradientMatches(
          "\(label) \(name)", x: parameter.value, analytic: analytic, samples: 6, loss: loss)
      }
      assertGradientMatches("\(label) images", x: images, analytic: imageGrad, samples: 12, loss: loss)
    }
  }

  /// With the auxiliary word loss on, every gradient is that of caption loss + weight · word loss
  /// (relative error ≤ 2e-2 with ε = 3e-3, since with 1e-2 a conv bias step
  /// crosses ReLU kinks, and floor 3e-3 for the Float rounding that the smaller ε magnifies); the word loss's
  /// targets are the words of each image's captions.
  func testWordLossGradientsMatchFiniteDifferences() {
    let config = tinyConfig(.lstm, pool: .flatten)
    let model = CaptionModel(config: config)
    var generator = SeededGenerator(seed: 6)
    model.initialize(using: &generator)
    let wordLoss = WordLoss(imageSize: config.dv, vocabularySize: config.vocabSize, weight: 3)
    wordLoss.initialize(using: &generator)
    model.wordLoss = wordLoss
    let (images, inputs, targets, steps) = batch()
    func loss() -> Double {
      var unused = SeededGenerator(seed: 0)
      let caption = model.forward(
        images: images, captionsPerImage: 2, steps: steps, inputTokens: inputs, targetTokens: targets,
        training: false, generator: &unused)
      return Double(caption) + 3 * Double(model.lastWordLoss)
    }
    zeroGradients(model.trainableParameters)
    _ = loss()
    // Image 0's captions use words 4, 5, 6, 7 (and <end>, left out); image 1's 4, 5, 6, 8.
    let present = Tensor(zeros: [2, config.vocabSize])
    for (b, words) in [[4, 5, 6, 7], [4, 5, 6, 8]].enumerated() {
      for w in words { present[b * config.vocabSize + w] = 1 }
    }
    let check = SigmoidBinaryCrossEntropy()
    let expected = check.forward(
      logits: wordLoss.head.forward(model.encode(images)), targets: present, firstColumn: 4)
    _ = loss()
    XCTAssertEqual(model.lastWordLoss, expected, accuracy: 1e-6)
    let imageGrad = model.backward(imageGrad: true)!.clone()
    for (name, parameter) in model.namedTrainableParameters {
      let analytic = parameter.grad.clone()
      assertGradientMatches(
        "word loss: \(name)", x: parameter.value, analytic: analytic, samples: 6, epsilon: 3e-3, floor: 3e-3,
        loss: loss)
    }
    assertGradientMatches(
      "word loss: images", x: images, analytic: imageGrad, samples: 12, epsilon: 3e-3, floor: 3e-3, loss: loss
    )
  }

  /// Every cell learns one small batch by heart: the loss falls below 0.05 within 400 Adam steps
  /// (300 was at the edge for the plain RNN: 0.0502 once the first layer's weight gradient took
  /// the direct kernel, whose rounding differs from im2col's).
  func testTinyModelOverfitsOneBatchForEveryCell() {
    for cell in CellType.allCases {
      let model = CaptionModel(config: tinyConfig(cell))
      var generator = SeededGenerator(seed: 9)
      model.initialize(using: &generator)
      let optimizer = Adam(parameters: model.parameters, learningRate: 2e-2)
      // Four images, one caption each (two captions of one image could not both be learnt by heart).
      let images = randomTensor([4, 3, 6, 6], scale: 1, seed: 12)
      let layout = TrainingBatch.tokenLayout([[4, 5, 6], [7, 4], [8, 8, 5, 4], [6]])
      let (inputs, targets, steps) = (layout.input, layout.target, layout.steps)
      var loss: Float = .infinity
      for _ in 0..<400 {
        zeroGradients(model.parameters)
        loss = model.forward(
          images: images, captionsPerImage: 1, steps: steps, inputTokens: inputs, targetTokens: targets,
          training: true, generator: &generator)
        model.backward()
        optimizer.step()
        if loss < 0.05 { break }
      }
      XCTAssertLessThan(loss, 0.05, "\(cell.rawValue) did not overfit one batch")
    }
  }
}
