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

  /// With the auxiliary word and scene losses on, every gradient is that of caption loss + 3 · word
  /// loss + 2 · scene loss (relative error ≤ 2e-2 with ε = 3e-3, since with 1e-2 a conv bias step
  /// crosses ReLU kinks, and floor 5e-3: the Float loss is near 5, so each central difference carries
  /// ~ulp(5)/2ε ≈ 8e-5 of rounding); the word
  /// loss's targets are the words of each image's captions, the scene loss's the images' scenes.
  func testAuxiliaryLossGradientsMatchFiniteDifferences() throws {
    let config = tinyConfig(.lstm, pool: .flatten)
    let model = CaptionModel(config: config)
    var generator = SeededGenerator(seed: 6)
    model.initialize(using: &generator)
    let wordLoss = WordLoss(imageSize: config.dv, vocabularySize: config.vocabSize, weight: 3)
    wordLoss.auxiliary.initialize(using: &generator)
    let scenes = [
      7: Scene(imageId: 7, filename: "a.png", objects: [object("star", "red", x: 10, y: 50)]),
      9: Scene(
        imageId: 9, filename: "b.png",
        objects: [object("circle", "red", x: 40, y: 10), object("star", "blue", x: 60, y: 60)]),
    ]
    let sceneLoss = try SceneLoss(
      scenes: scenes, imageIds: [7, 9], imageSize: config.dv, weight: 2, path: "s")
    sceneLoss.auxiliary.initialize(using: &generator)
    let objective = TrainingObjective(model: model, terms: [wordLoss, sceneLoss])
    let (images, inputs, targets, steps) = batch()
    let twoImages = TrainingBatch(
      epoch: 0, index: 0, images: images, imageIds: [7, 9], imageIndices: [0, 1], captionsPerImage: 2,
      steps: steps, inputTokens: inputs, targetTokens: targets)
    func loss() -> Double {
      var unused = SeededGenerator(seed: 0)
      let caption = objective.forward(twoImages, training: false, generator: &unused)
      let total =
        Double(caption) + 3 * Double(objective.termLosses[0]!) + 2 * Double(objective.termLosses[1]!)
      XCTAssertEqual(Double(objective.total), total, accuracy: 1e-5 * total)
      return total
    }
    zeroGradients(objective.trainableParameters)
    _ = loss()
    // Image 0's captions use words 4, 5, 6, 7 (and <end>, left out); image 1's 4, 5, 6, 8.
    let present = Tensor(zeros: [2, config.vocabSize])
    for (b, words) in [[4, 5, 6, 7], [4, 5, 6, 8]].enumerated() {
      for w in words { present[b * config.vocabSize + w] = 1 }
    }
    let v = model.encode(images)
    let words = (0..<config.vocabSize).map { $0 < 4 ? Float(0) : 1 / Float(config.vocabSize - 4) }
    let expectedWords = SigmoidBinaryCrossEntropy().forward(
      logits: wordLoss.head.forward(v), targets: present, columnWeights: words)
    // The scene questions: image 7 answers sceneLoss.labels.answers(scenes[7]), image 9 likewise.
    let labels = sceneLoss.labels
    let answered = Tensor(zeros: [2, labels.count])
    for (b, id) in [7, 9].enumerated() {
      for j in labels.answers(scenes[id]!) { answered[b * labels.count + j] = 1 }
    }
    let expectedScene = SigmoidBinaryCrossEntropy().forward(
      logits: sceneLoss.auxiliary.head.forward(v), targets: answered, columnWeights: labels.columnWeights)
    _ = loss()
    XCTAssertEqual(objective.termLosses[0]!, expectedWords, accuracy: 1e-6)
    XCTAssertEqual(objective.termLosses[1]!, expectedScene, accuracy: 1e-6)
    XCTAssertGreaterThan(objective.termLosses[1]!, 0.1)
    assertBackwardMatchesFiniteDifferences(
      "auxiliary losses", objective: objective, head: "scene_head", images: images, loss: loss)
  }

  /// After the `loss()` just run: `backward`, the auxiliary `head`'s weight and bias are trained,
  /// and every trainable parameter's and the images' gradient matches central differences of `loss`
  /// (the bounds of the auxiliary-loss tests).
  private func assertBackwardMatchesFiniteDifferences(
    _ label: String, objective: TrainingObjective, head: String, images: Tensor, loss: () -> Double
  ) {
    let imageGrad = objective.backward(imageGrad: true)!.clone()
    XCTAssertEqual(objective.namedTrainableParameters.filter { $0.0.hasPrefix(head + ".") }.count, 2)
    for (name, parameter) in objective.namedTrainableParameters {
      let analytic = parameter.grad.clone()
      assertGradientMatches(
        "\(label): \(name)", x: parameter.value, analytic: analytic, samples: 6, epsilon: 3e-3, floor: 5e-3,
        loss: loss)
    }
    assertGradientMatches(
      "\(label): images", x: images, analytic: imageGrad, samples: 12, epsilon: 3e-3, floor: 5e-3, loss: loss)
  }

  private func object(_ shape: String, _ color: String, x: Double, y: Double) -> SceneObject {
    SceneObject(shape: shape, color: color, size: "small", x: x, y: y, bbox: [x - 3, y - 3, x + 3, y + 3])
  }

  /// The mention loss through the whole model: its value is the masked binary cross-entropy of the
  /// steps with a current object, and its gradient reaches every parameter (and the images, through
  /// `v` in the recurrence) as finite differences say. Same bounds as the test above.
  func testMentionLossGradientsMatchFiniteDifferences() throws {
    let config = tinyConfig(.lstm, pool: .flatten)
    let model = CaptionModel(config: config)
    var generator = SeededGenerator(seed: 8)
    model.initialize(using: &generator)
    let scenes = [
      7: Scene(imageId: 7, filename: "a.png", objects: [object("star", "red", x: 10, y: 50)]),
      9: Scene(
        imageId: 9, filename: "b.png",
        objects: [object("circle", "red", x: 40, y: 10), object("star", "blue", x: 60, y: 60)]),
    ]
    let words = ["<pad>", "<start>", "<end>", "<unk>", "a", "red", "star", "blue", "circle"]
    let mentionLoss = try MentionLoss(
      scenes: scenes, imageIds: [7, 9], vocabulary: try Vocabulary(words: words), hiddenSize: config.hidden,
      weight: 2, path: "s")
    mentionLoss.auxiliary.initialize(using: &generator)
    let objective = TrainingObjective(model: model, terms: [mentionLoss])
    // Image 7: "a red star a" (the red star from step 3 to <end>), "red star a blue circle" (the red
    // star at steps 2–4; no blue circle in scene 7). Image 9: "a blue star a red circle" (the blue
    // star at 3–5, the red circle at 6), "circle circle" (no colour: none).
    let captions = [[4, 5, 6, 4], [5, 6, 4, 7, 8], [4, 7, 6, 4, 5, 8], [8, 8]]
    let layout = TrainingBatch.tokenLayout(captions)
    let (inputs, targets, steps) = (layout.input, layout.target, layout.steps)
    let images = randomTensor([2, 3, 6, 6], scale: 1, seed: 13)
    let twoImages = TrainingBatch(
      epoch: 0, index: 0, images: images, imageIds: [7, 9], imageIndices: [0, 1], captionsPerImage: 2,
      steps: steps, inputTokens: inputs, targetTokens: targets)
    func loss() -> Double {
      var unused = SeededGenerator(seed: 0)
      let caption = objective.forward(twoImages, training: false, generator: &unused)
      return Double(caption) + 2 * Double(objective.termLosses[0]!)
    }
    zeroGradients(objective.trainableParameters)
    _ = loss()
    // The kept rows (t · R + r, R = 4) and their objects, as the comment above counts them.
    let kept: [(row: Int, scene: Int, object: Int)] = [
      (3 * 4 + 0, 7, 0), (4 * 4 + 0, 7, 0), (2 * 4 + 1, 7, 0), (3 * 4 + 1, 7, 0), (4 * 4 + 1, 7, 0),
      (3 * 4 + 2, 9, 1), (4 * 4 + 2, 9, 1), (5 * 4 + 2, 9, 1), (6 * 4 + 2, 9, 0),
    ]
    let hidden = model.rnn.forward(
      inputs: model.embed.forward(tokens: inputs).view(shape: [steps, 4, config.embed]),
      image: replicate(model.encode(images), times: 2)
    ).clone()
    let keptHidden = Tensor(zeros: [kept.count, config.hidden])
    let answered = Tensor(zeros: [kept.count, mentionLoss.count])
    for (i, row) in kept.enumerated() {
      (keptHidden.pointer + i * config.hidden).update(
        from: hidden.pointer + row.row * config.hidden, count: config.hidden)
      for j in mentionLoss.answers(object: row.object, scene: scenes[row.scene]!) {
        answered[i * mentionLoss.count + j] = 1
      }
    }
    let columnWeights = [Float](repeating: 1 / 9, count: 9) + [Float](repeating: 1 / 8, count: 16)
    let expected = SigmoidBinaryCrossEntropy().forward(
      logits: mentionLoss.auxiliary.head.forward(keptHidden), targets: answered, columnWeights: columnWeights)
    _ = loss()
    XCTAssertEqual(objective.termLosses[0]!, expected, accuracy: 1e-6)
    XCTAssertGreaterThan(objective.termLosses[0]!, 0.1)
    assertBackwardMatchesFiniteDifferences(
      "mention loss", objective: objective, head: "mention_head", images: images, loss: loss)
  }

  private func replicate(_ v: Tensor, times k: Int) -> Tensor {
    let (batch, width) = (v.shape[0], v.shape[1])
    let rows = Tensor(zeros: [batch * k, width])
    for r in 0..<(batch * k) {
      (rows.pointer + r * width).update(from: v.pointer + (r / k) * width, count: width)
    }
    return rows
  }

  /// The mention loss's current objects and answers, counted out on a hand-made caption and scene
  /// (64 × 64; margins 0.08 · 64 = 5.12 px).
  func testMentionLossHandCase() throws {
    let scene = Scene(
      imageId: 3, filename: "x.png",
      objects: [
        object("star", "red", x: 10, y: 50),  // (0.16, 0.78)
        object("circle", "blue", x: 50, y: 12),  // (0.78, 0.19)
        object("circle", "red", x: 30, y: 30),
        object("circle", "red", x: 60, y: 60),  // a second red circle: "a red circle" names neither
      ])
    let words = [
      "<pad>", "<start>", "<end>", "<unk>", "a", "red", "star", "is", "left", "of", "blue", "circle", "and",
    ]
    let loss = try MentionLoss(
      scenes: [3: scene], imageIds: [3], vocabulary: try Vocabulary(words: words), hiddenSize: 4, weight: 1,
      path: "s")
    XCTAssertEqual(loss.shapes, ["circle", "star"])
    XCTAssertEqual(loss.colors, ["blue", "red"])
    // 9 regions, 2 shapes × 4 relations, 2 colours × 4 relations.
    XCTAssertEqual(loss.count, 25)
    // "a red star is left of a blue circle and a red circle": words 0–12, steps 0–13 (13: <end>).
    let caption = [4, 5, 6, 7, 8, 9, 4, 10, 11, 12, 4, 5, 11]
    let layout = TrainingBatch.tokenLayout([caption])
    // The red star from the step that reads "star" (3) to the one before "circle" (9), then the blue
    // circle up to "and a red" (12); the last mention names two objects: none at 13.
    XCTAssertEqual(
      loss.currentObjects(row: 0, rows: 1, steps: layout.steps, targetTokens: layout.target, scene: scene),
      [nil, nil, nil, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, nil])
    // Regions (0–8: top left, top right, bottom left, bottom right, top, bottom, left, right, centre);
    // then per shape (circle 9, star 13) and per colour (blue 17, red 21): left of, right of, above,
    // below.
    // The red star: bottom left, bottom, left; left of every circle (9, blue 17, red 21), below the
    // blue and the first red one (12, 20, 24), above the second red one (11, 23).
    XCTAssertEqual(loss.answers(object: 0, scene: scene), [2, 5, 6, 9, 11, 12, 17, 20, 21, 23, 24])
    // The blue circle: top right, top, right; right of and above the star (14, 15; red 22, 23) and
    // the first red circle (10, 11); left of and above the second (9, 11; red 21, 23).
    XCTAssertEqual(loss.answers(object: 1, scene: scene), [1, 4, 7, 9, 10, 11, 14, 15, 21, 22, 23])
    // A training image without a scene is an error that names the scenes file.
    XCTAssertThrowsError(
      try MentionLoss(
        scenes: [3: scene], imageIds: [3, 4], vocabulary: try Vocabulary(words: words), hiddenSize: 4,
        weight: 1, path: "d/scenes.json")
    ) { error in
      XCTAssertTrue("\(error)".contains("d/scenes.json") && "\(error)".contains("4"), "\(error)")
    }
  }

  /// The scene questions of a hand-made scene, counted out (grid 2 × 2 on a 64 × 64 image).
  func testSceneLabelsHandCase() throws {
    let labels = SceneLabels(shapes: ["circle", "square"], colors: ["blue", "red"], grid: 2)
    // 2 shapes, 2·2 pairs, 4 cells × (2 + 2), 4 pairs × 9 regions, 2·2 shape pairs × 4 relations:
    // 74 questions; group weights 1/2, 1/4, 1/16, 1/36, 1/16.
    XCTAssertEqual(labels.count, 74)
    XCTAssertEqual(
      labels.columnWeights,
      [Float](repeating: 0.5, count: 2) + [Float](repeating: 0.25, count: 4)
        + [Float](repeating: 1 / 16, count: 16) + [Float](repeating: 1 / 36, count: 36)
        + [Float](repeating: 1 / 16, count: 16))
    let scene = Scene(
      imageId: 1, filename: "x.png",
      objects: [
        object("circle", "red", x: 10, y: 50),  // shape 0, colour 1, cell (row 1, column 0)
        object("square", "blue", x: 40, y: 10),  // shape 1, colour 0, cell (row 0, column 1)
        object("heart", "red", x: 30, y: 30),  // not among the names: no questions
        object("circle", "red", x: 1e300, y: -5),  // far off the image: clamped to cell (0, 1)
      ])
    // circle: 0; red circle: 2 + 0·2 + 1 = 3; cell (1, 0) starts at 6 + 2·4 = 14: circle 14, red 14 + 2 + 1.
    // square: 1; blue square: 2 + 1·2 + 0 = 4; cell (0, 1) starts at 10: square 11, blue 12.
    // The clamped red circle: cell (0, 1): circle 10, red 13.
    let groups: [Int] = [0, 1, 3, 4, 10, 11, 12, 13, 14, 17]
    // Regions start at 22, 9 per pair (top left, top right, bottom left, bottom right, top, bottom,
    // left, right, centre). Red circle (pair 1, from 31) at (0.16, 0.78): bottom left 33, bottom 36,
    // left 37; off the image at (+∞, −0.08): top right 32, top 35, right 38. Blue square (pair 2,
    // from 40) at (0.63, 0.16): top right 41, top 44, right 47.
    let regions: [Int] = [32, 33, 35, 36, 37, 38, 41, 44, 47]
    // Relations start at 58, 4 per (subject shape, object shape) (left of, right of, above, below;
    // margin 0.08 · 64 px). Circle–circle (58): the first circle is left of (58) and below (61) the
    // far one, which is right of (59) and above (60) it. Circle–square (62): the first circle is
    // left of (62) and below (65) the square; the far circle is right of (63) and above (64) it.
    // Square–circle (66): left of the far circle (66), right of the first (67), above the first
    // (68), below the far one (69). Square–square: none; the heart takes no part.
    let relations = Array(58...69)
    XCTAssertEqual(labels.answers(scene), groups + regions + relations)
    // From scenes: the names they use, sorted.
    let found = SceneLabels(scenes: [scene])
    XCTAssertEqual(found.shapes, ["circle", "heart", "square"])
    XCTAssertEqual(found.colors, ["blue", "red"])
    XCTAssertEqual(found.grid, 4)
    // A training image without a scene is an error that names the scenes file.
    XCTAssertThrowsError(
      try SceneLoss(scenes: [1: scene], imageIds: [1, 2], imageSize: 4, weight: 1, path: "data/scenes.json")
    ) { error in
      XCTAssertTrue("\(error)".contains("data/scenes.json") && "\(error)".contains("2"), "\(error)")
    }
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

  /// A model with fixed weights keeps each token's first-layer input term (TokenInputTerms) and
  /// steps with it: its logits are those of the same model stepping from the embeddings, for every
  /// cell, one and two layers, the image at every step or the first, tokens repeated within a step
  /// and across steps, and a store too small for every token (the others computed at each step).
  /// New weights adopted afterwards replace what was kept.
  func testFixedWeightsKeepTokenInputTermsAndStepAsBefore() throws {
    let feeds = [[1, 4, 4], [4, 5, 1], [6, 6, 4], [7, 1, 5]]  // three rows, four steps
    for cell in CellType.allCases {
      for (layers, input) in [(1, ImageInput.every), (2, .first), (2, .every)] {
        for small in [false, true] {
          let label = "\(cell.rawValue), \(layers) layers, \(input), small store \(small)"
          let config = tinyConfig(cell, layers: layers, input: input)
          let (plain, fixed) = (CaptionModel(config: config), CaptionModel(config: config))
          var generator = SeededGenerator(seed: 31)
          plain.initialize(using: &generator)
          generator = SeededGenerator(seed: 31)
          fixed.initialize(using: &generator)
          fixed.fixWeights()
          let width = fixed.rnn.layers[0].gateWidth
          if small {
            fixed.tokenInputTerms = TokenInputTerms(
              vocabularySize: 9, width: width, maximumBytes: 2 * 4 * width)
          }
          let images = randomTensor([3, 3, 6, 6], scale: 1, seed: 12)
          let v = plain.encode(images)
          var (plainState, fixedState) = (
            plain.initialState(imageVectors: v), fixed.initialState(imageVectors: v)
          )
          let (expected, got) = (Tensor(zeros: [3, 9]), Tensor(zeros: [3, 9]))
          for (t, tokens) in feeds.enumerated() {
            plain.step(tokens: tokens, state: &plainState, logits: expected)
            fixed.step(tokens: tokens, state: &fixedState, logits: got)
            assertClose(got, expected, accuracy: 1e-5, "\(label), step \(t)")
          }
          XCTAssertEqual(fixed.tokenInputTerms?.keptTokens, small ? 2 : 5, label)  // tokens 1, 4, 5, 6, 7

          // New weights: the kept terms go.
          let other = CaptionModel(config: config)
          other.initialize(using: &generator)
          let tensors = Dictionary(
            uniqueKeysWithValues: other.namedTensors.map { ($0.name, $0.tensor.clone()) })
          try fixed.adopt(tensors: tensors, path: "other")
          XCTAssertEqual(fixed.tokenInputTerms?.keptTokens, 0, label)
          let w = other.encode(images)
          assertClose(fixed.encode(images), w, accuracy: 1e-5, "\(label), adopted encoder")
          var (otherState, adoptedState) = (
            other.initialState(imageVectors: w), fixed.initialState(imageVectors: w)
          )
          for tokens in feeds {
            other.step(tokens: tokens, state: &otherState, logits: expected)
            fixed.step(tokens: tokens, state: &adoptedState, logits: got)
            assertClose(got, expected, accuracy: 1e-5, "\(label), adopted")
          }
        }
      }
    }
  }
}
