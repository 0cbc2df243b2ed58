import CShims

/// The auxiliary scene loss (training only, for datasets with scenes.json, SPEC §9): from the image
/// vector alone, answer yes/no questions about the scene's ground truth, in five groups:
///
///     shapes    [S]          is there a <shape>?
///     pairs     [S·C]        is there a <colour> <shape>?                 (binds colour to shape)
///     cells     [G²·(S+C)]   is there a <shape> / a <colour> object centred in cell (row, column)
///                            of a G × G grid over the image?             (where each object is)
///     regions   [S·C·9]      is there a <colour> <shape> in <region>, one of the nine regions the
///                            captions name (Region: corners, sides, centre)?  (where each pair is)
///     relations [S·S·4]      is a <shape> left of / right of / above / below a <shape>?
///                            (PairRelation, as the evaluation reads it; between two objects)
///
///     loss_scene = Σ over the five groups of the group's mean binary cross-entropy
///                (AuxiliaryHead with column weights 1/|group|; S shapes, C colours)
///
/// Why: the caption loss tells the encoder little about shapes (the decoder can guess them from the
/// words so far), so on the shapes data shape words stay near chance for thousands of steps; the
/// words of the captions (WordLoss) help but say nothing of which colour goes with which shape or
/// where. These questions are what the captions must get right, and they reach `v` directly.
public final class SceneLoss: ObjectiveTerm {
  public let auxiliary: AuxiliaryHead
  public let name = "scene"
  public var weight: Float { auxiliary.weight }
  public let source = ObjectiveTermSource.imageVectors
  public var parameters: [(String, Parameter)] { auxiliary.namedParameters }
  public let labels: SceneLabels
  /// Image id → the indices of its "yes" answers.
  private let answers: [Int: [Int]]

  /// For training on the images `imageIds`, each of which must have a scene (`path` names the
  /// scenes file in the error otherwise).
  public init(scenes: [Int: Scene], imageIds: [Int], imageSize dv: Int, weight: Float, path: String) throws {
    var answers: [Int: [Int]] = [:]
    var used: [Scene] = []
    for id in imageIds {
      guard let scene = scenes[id] else {
        throw CaptionError(
          .badDataset, path: path, "no scene for training image \(id) (--scene-loss 0 trains without)")
      }
      used.append(scene)
    }
    labels = SceneLabels(scenes: used)
    for scene in used {
      if caption_interrupt_requested() != 0 { throw Interrupted() }
      answers[scene.imageId] = labels.answers(scene)
    }
    self.answers = answers
    auxiliary = AuxiliaryHead(
      name: "scene_head", inputSize: dv, columnWeights: labels.columnWeights, weight: weight)
  }

  /// The scene loss of image vectors `v` [B, Dv] of images `imageIds` [B].
  public func forward(v: Tensor, imageIds: [Int]) -> Float {
    precondition(imageIds.count == v.shape[0])
    let width = labels.count
    return auxiliary.forward(v: v) { present in
      for (b, id) in imageIds.enumerated() {
        for j in answers[id] ?? [] { present.pointer[b * width + j] = 1 }
      }
    }
  }

  public func forward(_ input: ObjectiveInput) -> Float? {
    input.imageIds.isEmpty ? nil : forward(v: input.imageVectors, imageIds: input.imageIds)
  }

  public func backward(into gradient: Tensor) {
    // weight · dloss/dv [B, Dv]
    Elementwise.add(auxiliary.backward().pointer, into: gradient.pointer, count: gradient.count)
  }
}

/// The questions of the scene loss: which shape and colour names (sorted, as the training scenes
/// use them), and the grid.
public struct SceneLabels: Equatable, Sendable {
  public let shapes: [String]
  public let colors: [String]
  public let grid: Int

  public init(shapes: [String], colors: [String], grid: Int = 4) {
    self.shapes = shapes
    self.colors = colors
    self.grid = grid
  }

  /// The names that occur in `scenes`.
  public init(scenes: [Scene], grid: Int = 4) {
    let objects = scenes.flatMap(\.objects)
    self.init(
      shapes: Set(objects.map(\.shape)).sorted(), colors: Set(objects.map(\.color)).sorted(), grid: grid)
  }

  /// The sizes of the five groups, in order: shapes, pairs, cells, regions, relations.
  var groupSizes: [Int] {
    let (s, c) = (shapes.count, colors.count)
    return [
      s, s * c, grid * grid * (s + c), s * c * Region.allCases.count, s * s * PairRelation.allCases.count,
    ]
  }
  /// Where each group's questions start.
  var groupStarts: [Int] { groupSizes.reduce(into: [0]) { $0.append($0.last! + $1) }.dropLast() }
  var pairsStart: Int { groupStarts[1] }
  var cellsStart: Int { groupStarts[2] }
  var regionsStart: Int { groupStarts[3] }
  var relationsStart: Int { groupStarts[4] }
  /// L: the number of questions.
  public var count: Int { groupSizes.reduce(0, +) }

  /// 1/|group| for each column of each group, so that each group weighs as one mean.
  public var columnWeights: [Float] {
    groupSizes.flatMap { size in [Float](repeating: 1 / Float(size), count: size) }
  }

  /// For the log: how many questions of each kind.
  public var summary: String {
    "\(count) questions (\(shapes.count) shapes, \(colors.count) colours, \(grid)×\(grid) grid, "
      + "\(Region.allCases.count) regions, \(PairRelation.allCases.count) relations between shapes)"
  }

  /// How many relations `answers` has tested (its work, for a test).
  nonisolated(unsafe) static var relationChecks = 0

  /// The indices of the questions whose answer is yes for `scene` (sorted, without repeats).
  public func answers(_ scene: Scene) -> [Int] {
    var yes = Set<Int>()
    for object in scene.objects {
      guard let s = shapes.firstIndex(of: object.shape), let c = colors.firstIndex(of: object.color) else {
        continue  // a name the training scenes never use
      }
      let (row, column) = (band(object.y, side: scene.height), band(object.x, side: scene.width))
      let cell = cellsStart + (row * grid + column) * (shapes.count + colors.count)
      let pair = s * colors.count + c
      yes.formUnion([s, pairsStart + pair, cell + s, cell + shapes.count + c])
      // The regions as the grounded evaluation reads them (positions as fractions of the side).
      let (x, y) = (object.x / Double(max(scene.width, 1)), object.y / Double(max(scene.height, 1)))
      for (r, region) in Region.allCases.enumerated() where region.holds(x: x, y: y, size: 1) {
        yes.insert(regionsStart + pair * Region.allCases.count + r)
      }
    }
    // Relations between two objects, as "the <subject shape> is <relation> the <object shape>". Each
    // relation compares one axis with a positive margin, so some pair of shapes (a, b) holds it iff
    // the extreme pair does: a's lowest and b's highest coordinate, or a's highest and b's lowest
    // (an object with itself never does). Linear in the objects, not quadratic.
    var low = [(x: Double, y: Double)?](repeating: nil, count: shapes.count)
    var high = low
    for object in scene.objects where !object.x.isNaN && !object.y.isNaN {
      guard let s = shapes.firstIndex(of: object.shape) else { continue }
      low[s] = (min(low[s]?.x ?? object.x, object.x), min(low[s]?.y ?? object.y, object.y))
      high[s] = (max(high[s]?.x ?? object.x, object.x), max(high[s]?.y ?? object.y, object.y))
    }
    let relations = PairRelation.allCases
    let side = Double(max(scene.width, 1))
    for sa in shapes.indices {
      guard let lowA = low[sa], let highA = high[sa] else { continue }
      for sb in shapes.indices {
        guard let lowB = low[sb], let highB = high[sb] else { continue }
        for (r, relation) in relations.enumerated() {
          SceneLabels.relationChecks += 2
          if relation.holds(subject: lowA, object: highB, size: side)
            || relation.holds(subject: highA, object: lowB, size: side)
          {
            yes.insert(relationsStart + (sa * shapes.count + sb) * relations.count + r)
          }
        }
      }
    }
    return yes.sorted()
  }

  /// Which of the grid's bands (0 ..< grid) the coordinate falls in; outside values clamp.
  private func band(_ coordinate: Double, side: Int) -> Int {
    let position = coordinate / Double(max(side, 1)) * Double(grid)
    guard position.isFinite else { return 0 }
    return Int(min(Double(grid - 1), max(0, position)))
  }
}
