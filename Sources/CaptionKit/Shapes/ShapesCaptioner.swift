/// Captions for a shapes scene from a small grammar: every caption true of the scene, mentioning every
/// object, at most 19 words after tokenisation (SPEC §6, §9).
///
/// A caption is an optional opener ("there are", "this image shows", "three shapes:") and a list of
/// clauses, one per group of identical objects ("two red circles") or per related groups:
///   plain    M                          "a small red circle"
///   region   M [verb] PLACE             "a red circle is in the top left corner"
///   pair     M [verb] RELATION N        "a red circle to the left of a blue star"
///   between  M [verb] between N and K   "a red circle sits between a blue star and a green heart"
/// where relational clauses may also come fronted ("above a blue star there is a red circle"), only
/// first or after "and" (GroundedParser's subject rule). Relations are stated only when they hold
/// with the generator's safety margin (the `strict` definitions of SpatialRelations.swift), pair and
/// between relations only between single objects.
public enum ShapesCaptioner {
  public static let maxTokens = 19

  /// Objects of the same shape and colour (they share a size), named together.
  struct Group {
    var shape: String
    var plural: String
    var color: String
    var size: String
    /// Centres of the members, as fractions of the image side.
    var positions: [(x: Double, y: Double)]
    var count: Int { positions.count }
  }

  enum Clause {
    case plain(Int)
    case region(Int, Region)
    case pair(Int, PairRelation, Int)
    case between(Int, Int, Int)
  }

  static let regionPhrases: [Region: [String]] = [
    .topLeft: ["in the top left corner", "in the upper left corner", "at the top left"],
    .topRight: ["in the top right corner", "in the upper right corner", "at the top right"],
    .bottomLeft: ["in the bottom left corner", "in the lower left corner", "at the bottom left"],
    .bottomRight: ["in the bottom right corner", "in the lower right corner", "at the bottom right"],
    .top: ["at the top", "near the top"],
    .bottom: ["at the bottom", "near the bottom"],
    .left: ["on the left", "on the left side"],
    .right: ["on the right", "on the right side"],
    .center: ["in the center", "in the middle"],
  ]

  static let pairPhrases: [PairRelation: [String]] = [
    .leftOf: ["to the left of", "left of"],
    .rightOf: ["to the right of", "right of"],
    .above: ["above", "over"],
    .below: ["below", "under", "beneath"],
  ]

  static let sizeWords: [String: [String]] = [
    "small": ["small", "little"], "medium": ["medium", "medium-sized"], "large": ["large", "big"],
  ]

  static let numberWords = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight"]

  /// `count` captions (distinct when the grammar allows) for the objects of one scene.
  public static func captions(
    for objects: [SceneObject], imageSize: Int, count: Int = 5, random: inout SeededGenerator
  ) -> [String] {
    let groups = makeGroups(objects, imageSize: imageSize)
    guard !groups.isEmpty else { return [String](repeating: "An empty picture.", count: count) }
    var result: [String] = []
    var attempts = 0
    while result.count < count {
      attempts += 1
      let caption = oneCaption(groups, random: &random, plainOnly: attempts > 60)
      if attempts > 80 || !result.contains(caption) { result.append(caption) }
    }
    return result
  }

  static func makeGroups(_ objects: [SceneObject], imageSize: Int) -> [Group] {
    var groups: [Group] = []
    let side = Double(imageSize)
    for object in objects {
      let position = (x: object.x / side, y: object.y / side)
      if let g = groups.firstIndex(where: { $0.shape == object.shape && $0.color == object.color }) {
        groups[g].positions.append(position)
      } else {
        let plural = ShapeKind(rawValue: object.shape)?.plural ?? object.shape + "s"
        groups.append(
          Group(
            shape: object.shape, plural: plural, color: object.color, size: object.size, positions: [position]
          ))
      }
    }
    return groups
  }

  /// One caption; tries again until it fits in `maxTokens` words (the plain list always does for
  /// four objects: at most 4·4 + 3 words).
  static func oneCaption(_ groups: [Group], random: inout SeededGenerator, plainOnly: Bool) -> String {
    for attempt in 0..<20 {
      let simple = plainOnly || attempt >= 15
      let clauses = planClauses(
        groups, random: &random, relationChance: simple ? 0 : random.pick([0.35, 0.7, 1.0]))
      let sizeChance = simple ? 0 : random.pick([0.0, 0.4, 0.8, 1.0])
      let text = write(clauses, groups, sizeChance: sizeChance, random: &random)
      if wordCount(text) <= maxTokens { return text }
    }
    let clauses = (0..<groups.count).map { Clause.plain($0) }
    return write(clauses, groups, sizeChance: 0, random: &random)
  }

  /// The number of words SPEC §6's tokeniser makes of a generated caption: its alphabet is lowercase
  /// words, hyphens, spaces, ",", ":" and a final "." (dropped as punctuation). Counted here rather than
  /// by the tokeniser so the captions of a seed stay the same whatever becomes of the tokeniser.
  static func wordCount(_ text: String) -> Int {
    text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == ":" || $0 == "." }).count
  }

  /// Chooses which groups are described together and how.
  static func planClauses(_ groups: [Group], random: inout SeededGenerator, relationChance: Double)
    -> [Clause]
  {
    var remaining = Array(groups.indices)
    random.shuffle(&remaining)
    var clauses: [Clause] = []
    while !remaining.isEmpty {
      let g = remaining.removeFirst()
      var options: [Clause] = []
      if let region = region(of: groups[g], random: &random) { options.append(.region(g, region)) }
      if groups[g].count == 1 {
        let a = groups[g].positions[0]
        let singles = remaining.filter { groups[$0].count == 1 }
        for h in singles {
          if let relation = dominantRelation(a, groups[h].positions[0]) {
            options.append(.pair(g, relation, h))
          }
        }
        for (i, h) in singles.enumerated() {
          for k in singles[(i + 1)...]
          where Betweenness.holds(a, groups[h].positions[0], groups[k].positions[0], size: 1, strict: true) {
            options.append(random.chance(0.5) ? .between(g, h, k) : .between(g, k, h))
          }
        }
      }
      let clause = !options.isEmpty && random.chance(relationChance) ? random.pick(options) : .plain(g)
      switch clause {
      case .pair(_, _, let h): remaining.removeAll { $0 == h }
      case .between(_, let h, let k): remaining.removeAll { $0 == h || $0 == k }
      default: break
      }
      clauses.append(clause)
    }
    return clauses
  }

  /// The axis along which b lies further from a, if the relation along it holds strictly.
  static func dominantRelation(_ a: (x: Double, y: Double), _ b: (x: Double, y: Double)) -> PairRelation? {
    let dx = b.x - a.x
    let dy = b.y - a.y
    let relation: PairRelation =
      abs(dx) >= abs(dy) ? (dx > 0 ? .leftOf : .rightOf) : (dy > 0 ? .above : .below)
    return relation.holds(subject: a, object: b, size: 1, strict: true) ? relation : nil
  }

  /// The most specific region all of a group's members are strictly in: a corner, else a side, else
  /// the centre.
  static func region(of group: Group, random: inout SeededGenerator) -> Region? {
    func holding(_ regions: [Region]) -> [Region] {
      regions.filter { r in group.positions.allSatisfy { r.holds(x: $0.x, y: $0.y, size: 1, strict: true) } }
    }
    for tier in [
      [Region.topLeft, .topRight, .bottomLeft, .bottomRight], [.top, .bottom, .left, .right], [.center],
    ] {
      let found = holding(tier)
      if !found.isEmpty { return random.pick(found) }
    }
    return nil
  }

  /// Words for a group: [count] [size] colour shape.
  static func mention(_ group: Group, sizeChance: Double, random: inout SeededGenerator) -> String {
    var words: [String] = []
    if random.chance(sizeChance) { words.append(random.pick(sizeWords[group.size] ?? [group.size])) }
    words.append(group.color)
    words.append(group.count == 1 ? group.shape : group.plural)
    let body = words.joined(separator: " ")
    if group.count == 1 {
      let roll = random.below32(20)
      if roll == 0 { return "one " + body }
      if roll == 1 { return "a single " + body }
      return (["a", "e", "i", "o", "u"].contains(body.first.map(String.init) ?? "") ? "an " : "a ") + body
    }
    if group.count == 2 && random.chance(0.2) { return "a pair of " + body }
    return numberWords[min(group.count, numberWords.count - 1)] + " " + body
  }

  static func write(_ clauses: [Clause], _ groups: [Group], sizeChance: Double, random: inout SeededGenerator)
    -> String
  {
    func m(_ g: Int) -> String { mention(groups[g], sizeChance: sizeChance, random: &random) }
    func plural(_ clause: Clause) -> Bool {
      switch clause {
      case .plain(let g), .region(let g, _): return groups[g].count > 1
      default: return false
      }
    }
    let total = groups.reduce(0) { $0 + $1.count }
    var text = ""
    for (index, clause) in clauses.enumerated() {
      // How this clause joins the previous ones; a fronted clause needs a fresh start or "and".
      var joiner = ""
      if index > 0 {
        joiner =
          index == clauses.count - 1
          ? random.pick([" and ", " and ", ", and ", " with ", " along with ", " as well as "]) : ", "
      }
      var opener = ""
      if index == 0 && random.chance(0.55) {
        let first = plural(clause) ? "there are" : "there is"
        var openers = [
          first, first, "a picture of", "an image of", "a photo of", "a drawing of", "this image shows",
          "the picture shows", "we can see", "a scene with", "in this picture \(first)",
        ]
        if total > 1 {
          openers.append(
            "\(numberWords[min(total, numberWords.count - 1)]) \(random.pick(["shapes", "objects"])),")
        }
        opener = random.pick(openers) + " "
      }
      let canFront = (index == 0 && opener.isEmpty) || joiner.hasSuffix("and ")
      let fronted: Bool
      if case .plain = clause { fronted = false } else { fronted = canFront && random.chance(0.3) }
      let verbs = plural(clause) ? ["", "are", "sit", "lie"] : ["", "is", "sits", "lies"]
      let verb = (opener.isEmpty && ["", ", ", " and ", ", and "].contains(joiner)) ? random.pick(verbs) : ""
      let frontedVerb = random.pick(
        plural(clause) ? ["there are", "are", "lie"] : ["there is", "is", "sits", "lies"])
      var part = ""
      switch clause {
      case .plain(let g):
        part = m(g)
      case .region(let g, let region):
        let place = random.pick(regionPhrases[region]!)
        part =
          fronted
          ? "\(place) \(frontedVerb) \(m(g))"
          : [m(g), verb, place].filter { !$0.isEmpty }.joined(separator: " ")
      case .pair(let g, let relation, let h):
        let phrase = random.pick(pairPhrases[relation]!)
        part =
          fronted
          ? "\(phrase) \(m(h)) \(frontedVerb) \(m(g))"
          : [m(g), verb, phrase, m(h)].filter { !$0.isEmpty }.joined(separator: " ")
      case .between(let g, let h, let k):
        part =
          fronted
          ? "between \(m(h)) and \(m(k)) \(frontedVerb) \(m(g))"
          : [m(g), verb, "between", m(h), "and", m(k)].filter { !$0.isEmpty }.joined(separator: " ")
      }
      text += joiner + opener + part
    }
    return text.prefix(1).uppercased() + text.dropFirst() + "."
  }
}
