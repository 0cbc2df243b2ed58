/// The auxiliary mention loss (training only, for datasets with scenes.json, SPEC §9): from the
/// decoder's top hidden state, say where the object the caption has just named lies.
///
/// At step t the decoder has read `<start> w_1 … w_t`. If the last object mention among those words
/// ("a small red circle") names a single object, and the scene holds exactly one object of that
/// colour and shape, that object is the step's "current object", and a head on h_t answers, in three
/// groups:
///
///     regions   [9]     is the current object in <region>? (Region: corners, sides, centre)
///     shapes    [S·4]   is it left of / right of / above / below a <shape>?      (PairRelation)
///     colours   [C·4]   is it left of / right of / above / below a <colour> object?
///
///     logits       = head(h_t)                            // [T·R, L], head: Linear(H → L)
///     loss_mention = mean over steps with a current object of Σ_groups the group's mean binary
///                    cross-entropy                        (AuxiliaryHead, column weights 1/|group|)
///
/// Steps without a current object (before the first mention, after a plural mention or one that names
/// no object or several of the scene, past the caption's end) are left out. The gradient reaches h_t,
/// so through the recurrence the decoder learns to look up, in `v`, the position of what it has just
/// named.
///
/// Why: the image vector knows where each colour–shape pair is (a linear read-out of v tells the
/// region of a named object right 98% of the time on the model trained without this loss), but the
/// decoder, trained only on the words, often states the region of another object of the scene ("a
/// pink square at the top" when the blue diamonds are at the top). Region phrases are a few percent
/// of the caption tokens; these questions ask it at every step after every mention.
public final class MentionLoss: ObjectiveTerm {
  public let auxiliary: AuxiliaryHead
  public let name = "mention"
  public var weight: Float { auxiliary.weight }
  public let source = ObjectiveTermSource.topStates
  public var parameters: [(String, Parameter)] { auxiliary.namedParameters }
  public let shapes: [String]
  public let colors: [String]
  /// The training vocabulary (token id → word).
  private let vocabulary: Vocabulary
  /// Image id → its scene (the training images only).
  private let scenes: [Int: Scene]
  private var rowMask: [Bool] = []  // [T·R]: whether the step has a current object

  static let regions = Region.allCases
  static let relations = PairRelation.allCases

  /// For training on the images `imageIds`, each of which must have a scene (`path` names the scenes
  /// file in the error otherwise); `vocabulary` reads the captions' tokens.
  public init(
    scenes: [Int: Scene], imageIds: [Int], vocabulary: Vocabulary, hiddenSize: Int, weight: Float,
    path: String
  ) throws {
    var used: [Int: Scene] = [:]
    for id in imageIds {
      guard let scene = scenes[id] else {
        throw CaptionError(
          .badDataset, path: path, "no scene for training image \(id) (--mention-loss 0 trains without)")
      }
      used[id] = scene
    }
    let objects = used.values.flatMap(\.objects)
    shapes = Set(objects.map(\.shape)).sorted()
    colors = Set(objects.map(\.color)).sorted()
    self.vocabulary = vocabulary
    self.scenes = used
    let groupSizes = [
      Self.regions.count, shapes.count * Self.relations.count, colors.count * Self.relations.count,
    ]
    let columnWeights = groupSizes.flatMap { size in [Float](repeating: 1 / Float(size), count: size) }
    auxiliary = AuxiliaryHead(
      name: "mention_head", inputSize: hiddenSize, columnWeights: columnWeights, weight: weight)
  }

  /// L: the number of questions.
  public var count: Int { auxiliary.head.outFeatures }

  /// For the log.
  public var summary: String {
    "\(count) questions (\(Self.regions.count) regions, \(Self.relations.count) relations to "
      + "\(shapes.count) shapes and \(colors.count) colours)"
  }

  /// The mention loss of the top hidden states `h` [T·R, H] (time-major: row t·R + r is step t of
  /// caption row r), for the targets `[T, R]` of captions of images `imageIds` [B] (row r shows image
  /// r / K).
  public func forward(h: Tensor, targetTokens: [Int], steps: Int, imageIds: [Int], captionsPerImage k: Int)
    -> Float
  {
    let rows = imageIds.count * k
    precondition(targetTokens.count == steps * rows && h.shape[0] == steps * rows)
    // Each row's current object at each step (nil: none), then the kept steps' answers.
    let current = (0..<rows).map { r in
      scenes[imageIds[r / k]].map {
        currentObjects(row: r, rows: rows, steps: steps, targetTokens: targetTokens, scene: $0)
      } ?? [Int?](repeating: nil, count: steps)
    }
    if rowMask.count != steps * rows { rowMask = [Bool](repeating: false, count: steps * rows) }
    for t in 0..<steps {
      for r in 0..<rows { rowMask[t * rows + r] = current[r][t] != nil }
    }
    let width = count
    return auxiliary.forward(v: h, rowMask: rowMask) { present in
      for r in 0..<rows {
        guard let scene = scenes[imageIds[r / k]] else { continue }
        var answered: (object: Int, yes: [Int])? = nil  // consecutive steps share their object
        for (t, object) in current[r].enumerated() {
          guard let object else { continue }
          if answered?.object != object { answered = (object, answers(object: object, scene: scene)) }
          for j in answered!.yes { present.pointer[(t * rows + r) * width + j] = 1 }
        }
      }
    }
  }

  public func forward(_ input: ObjectiveInput) -> Float? {
    guard !input.imageIds.isEmpty else { return nil }
    return forward(
      h: input.topStates, targetTokens: input.targetTokens, steps: input.steps, imageIds: input.imageIds,
      captionsPerImage: input.captionsPerImage)
  }

  public func backward(into gradient: Tensor) {
    // weight · dloss/dh [T·R, H]
    Elementwise.add(auxiliary.backward().pointer, into: gradient.pointer, count: gradient.count)
  }

  /// For each step t of caption row r, the index in `scene.objects` of its current object, if any.
  func currentObjects(row r: Int, rows: Int, steps: Int, targetTokens: [Int], scene: Scene) -> [Int?] {
    // The caption's words: the targets up to <end> (w_1 … w_n).
    var tokens: [String] = []
    for t in 0..<steps {
      let id = targetTokens[t * rows + r]
      if id == Vocabulary.end || id == Vocabulary.pad { break }
      tokens.append(vocabulary.word(id))
    }
    var current = [Int?](repeating: nil, count: steps)
    let mentions = GroundedParser.parse(tokens).mentions
    for (m, mention) in mentions.enumerated() {
      // The object this mention names, if it names exactly one and only one such object exists.
      var named: Int? = nil
      if mention.count == 1, let color = mention.color {
        let matches = scene.objects.indices.filter {
          scene.objects[$0].shape == mention.shape && scene.objects[$0].color == color
        }
        if matches.count == 1 { named = matches[0] }
      }
      // Step t reads w_t, word index t − 1: from the shape noun on, until the next mention's noun;
      // the step that predicts <end> (t = n) is included.
      let first = mention.shapeToken + 1
      let end = m + 1 < mentions.count ? mentions[m + 1].shapeToken + 1 : min(tokens.count + 1, steps)
      if first < end { for t in first..<end { current[t] = named } }
    }
    return current
  }

  /// The indices of the questions whose answer is yes for object `a` of `scene`.
  func answers(object a: Int, scene: Scene) -> [Int] {
    let side = (x: Double(max(scene.width, 1)), y: Double(max(scene.height, 1)))
    func position(_ k: Int) -> (x: Double, y: Double) {
      (scene.objects[k].x / side.x, scene.objects[k].y / side.y)
    }
    let here = position(a)
    var yes = Set<Int>()
    for (i, region) in Self.regions.enumerated() where region.holds(x: here.x, y: here.y, size: 1) {
      yes.insert(i)
    }
    let shapesStart = Self.regions.count
    let colorsStart = shapesStart + shapes.count * Self.relations.count
    for b in scene.objects.indices where b != a {
      let other = scene.objects[b]
      for (i, relation) in Self.relations.enumerated()
      where relation.holds(subject: here, object: position(b), size: 1) {
        if let s = shapes.firstIndex(of: other.shape) {
          yes.insert(shapesStart + s * Self.relations.count + i)
        }
        if let c = colors.firstIndex(of: other.color) {
          yes.insert(colorsStart + c * Self.relations.count + i)
        }
      }
    }
    return yes.sorted()
  }
}
