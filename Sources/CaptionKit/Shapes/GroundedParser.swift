/// Parses a tokenised caption into object mentions ("two small red circles") and the spatial relations
/// stated between them ("… to the left of …", "… in the top left corner", "… between … and …").
///
/// Conventions (the caption generator follows them, and a model trained on its captions learns them):
/// - a mention is [count] [size] [colour] shape-noun; "a pair of" counts 2; a plural without a count
///   word stands for 2 objects (not a counted mention);
/// - a pair relation's object is the next mention; "between" takes the next two mentions;
/// - a relation's subject is the nearest mention before it, unless a joining word ("and", "with",
///   …) comes first or there is none, then it is the first mention after the relation's objects
///   ("to the left of a star there is a circle").
public enum GroundedParser {
  public struct Mention: Equatable, Sendable {
    public var count: Int
    /// Whether a count word was given ("one", "two", "a pair of", "a single" …).
    public var counted: Bool
    public var size: String?
    public var color: String?
    public var shape: String
    public var countToken: Int?
    public var sizeToken: Int?
    public var colorToken: Int?
    public var shapeToken: Int
  }

  public enum RelationKind: Equatable, Sendable {
    case pair(PairRelation)
    case region(Region)
    case between
  }

  public struct Relation: Equatable, Sendable {
    public var kind: RelationKind
    /// Index of the subject mention.
    public var subject: Int
    /// Indices of the object mentions (one for a pair, two for between, none for a region).
    public var objects: [Int]
    /// The token indices of the relation's phrase.
    public var tokens: Range<Int>
  }

  public struct Parsed: Equatable, Sendable {
    public var mentions: [Mention]
    public var relations: [Relation]
  }

  // MARK: Word tables

  static let shapeWords: [String: (shape: String, plural: Bool)] = {
    var table: [String: (String, Bool)] = [:]
    for shape in ShapeKind.allCases {
      table[shape.rawValue] = (shape.rawValue, false)
      table[shape.plural] = (shape.rawValue, true)
    }
    return table
  }()

  /// Colour words, with synonyms and colours no scene has (so a model's "gray" is a wrong colour).
  static let colorWords: [String: String] = {
    var table: [String: String] = [:]
    for color in ShapeColor.allCases { table[color.rawValue] = color.rawValue }
    for (word, color) in [
      ("violet", "purple"), ("turquoise", "cyan"), ("grey", "gray"), ("gray", "gray"), ("brown", "brown"),
    ] {
      table[word] = color
    }
    return table
  }()

  static let sizeWords: [String: String] = [
    "small": "small", "little": "small", "tiny": "small", "medium": "medium", "medium-sized": "medium",
    "mid-sized": "medium", "large": "large", "big": "large", "huge": "large",
  ]

  static let countWords: [String: Int] = [
    "one": 1, "single": 1, "two": 2, "pair": 2, "three": 3, "four": 4, "five": 5, "six": 6,
  ]

  /// Nouns that name no particular shape ("three shapes: …"): they end a pending mention.
  static let genericNouns: Set<String> = [
    "shape", "shapes", "object", "objects", "thing", "things", "item", "items",
  ]

  /// Words that join clauses: a relation after one of them takes its subject from later words.
  static let joiningWords: Set<String> = ["and", "with", "plus", "while", "also"]

  /// Multi-word spatial phrases, longest first so "on the left of" wins over "on the left".
  static let phrases: [(words: [String], kind: PhraseKind)] = {
    var list: [([String], PhraseKind)] = []
    func add(_ text: String, _ kind: PhraseKind) {
      list.append((text.split(separator: " ").map(String.init), kind))
    }
    for (side, relation) in [("left", PairRelation.leftOf), ("right", PairRelation.rightOf)] {
      add("to the \(side) of", .pair(relation))
      add("on the \(side) of", .pair(relation))
      add("\(side) of", .pair(relation))
    }
    for word in ["above", "over", "on top of"] { add(word, .pair(.above)) }
    for word in ["below", "under", "beneath", "underneath"] { add(word, .pair(.below)) }
    add("between", .between)
    add("in between", .between)
    let corners: [(String, String, Region)] = [
      ("top", "left", .topLeft), ("top", "right", .topRight), ("bottom", "left", .bottomLeft),
      ("bottom", "right", .bottomRight),
    ]
    for (vertical, horizontal, region) in corners {
      let verticals = vertical == "top" ? ["top", "upper"] : ["bottom", "lower"]
      for v in verticals {
        for prefix in ["in the ", "at the ", ""] {
          add("\(prefix)\(v) \(horizontal) corner", .region(region))
          if !prefix.isEmpty { add("\(prefix)\(v) \(horizontal)", .region(region)) }
        }
      }
    }
    for (word, region) in [("top", Region.top), ("bottom", Region.bottom)] {
      for prefix in ["at the", "near the", "in the", "on the"] { add("\(prefix) \(word)", .region(region)) }
    }
    for (word, region) in [("left", Region.left), ("right", Region.right)] {
      for prefix in ["on the", "at the", "near the", "to the"] {
        add("\(prefix) \(word)", .region(region))
        add("\(prefix) \(word) side", .region(region))
      }
    }
    for word in ["center", "centre", "middle"] {
      for prefix in ["in the", "at the", "near the"] { add("\(prefix) \(word)", .region(.center)) }
    }
    return list.sorted { $0.0.count > $1.0.count }
  }()

  enum PhraseKind {
    case pair(PairRelation)
    case region(Region)
    case between
  }

  private enum Item {
    case mention(Int)
    case phrase(PhraseKind, Range<Int>)
    case joining
  }

  // MARK: Parsing

  public static func parse(_ rawTokens: [String]) -> Parsed {
    // Tokens from SPEC §6's tokeniser carry no punctuation; drop any trailing marks from others.
    let tokens = rawTokens.map { token -> String in
      var word = Substring(token)
      while let last = word.last, ":;,.!?".contains(last), word.count > 1 { word = word.dropLast() }
      return String(word)
    }
    var mentions: [Mention] = []
    var items: [Item] = []

    // Pending words of a mention not yet closed by its shape noun.
    var count: Int? = nil
    var countToken: Int? = nil
    var size: String? = nil
    var sizeToken: Int? = nil
    var color: String? = nil
    var colorToken: Int? = nil
    func reset() {
      count = nil
      countToken = nil
      size = nil
      sizeToken = nil
      color = nil
      colorToken = nil
    }

    var i = 0
    scan: while i < tokens.count {
      for (words, kind) in phrases where i + words.count <= tokens.count {
        if tokens[i..<(i + words.count)].elementsEqual(words) {
          reset()
          items.append(.phrase(kind, i..<(i + words.count)))
          i += words.count
          continue scan
        }
      }
      let word = tokens[i]
      if joiningWords.contains(word) {
        reset()
        items.append(.joining)
      } else if let n = countWords[word] {
        count = n
        countToken = i
      } else if let s = sizeWords[word] {
        size = s
        sizeToken = i
      } else if let c = colorWords[word] {
        color = c
        colorToken = i
      } else if let (shape, plural) = shapeWords[word] {
        mentions.append(
          Mention(
            count: count ?? (plural ? 2 : 1), counted: count != nil, size: size, color: color, shape: shape,
            countToken: countToken, sizeToken: sizeToken, colorToken: colorToken, shapeToken: i))
        items.append(.mention(mentions.count - 1))
        reset()
      } else if genericNouns.contains(word) {
        reset()
      }
      i += 1
    }

    // Resolve each spatial phrase's subject and objects.
    var relations: [Relation] = []
    func mentionsAfter(_ position: Int, count: Int) -> (found: [Int], next: Int)? {
      var found: [Int] = []
      var p = position + 1
      while p < items.count && found.count < count {
        if case .mention(let m) = items[p] { found.append(m) }
        p += 1
      }
      return found.count == count ? (found, p - 1) : nil
    }
    for (p, item) in items.enumerated() {
      guard case .phrase(let kind, let range) = item else { continue }
      let objectCount: Int
      let relationKind: RelationKind
      switch kind {
      case .pair(let pair):
        objectCount = 1
        relationKind = .pair(pair)
      case .region(let region):
        objectCount = 0
        relationKind = .region(region)
      case .between:
        objectCount = 2
        relationKind = .between
      }
      guard let (objects, last) = mentionsAfter(p, count: objectCount) else { continue }
      // The subject: the nearest mention before, across other phrases but not across a joining word.
      var subject: Int? = nil
      var q = p - 1
      back: while q >= 0 {
        switch items[q] {
        case .mention(let m):
          subject = m
          break back
        case .joining: break back
        case .phrase: q -= 1
        }
      }
      if subject == nil, let (after, _) = mentionsAfter(last, count: 1) { subject = after[0] }
      guard let subject else { continue }
      relations.append(Relation(kind: relationKind, subject: subject, objects: objects, tokens: range))
    }
    return Parsed(mentions: mentions, relations: relations)
  }
}
