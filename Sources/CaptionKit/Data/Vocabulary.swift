/// The word list: index = token id. Ids 0...3 are `<pad> <start> <end> <unk>` (SPEC §3).
public struct Vocabulary: Equatable, Sendable {
  public static let pad = 0
  public static let start = 1
  public static let end = 2
  public static let unk = 3
  /// The first id of an ordinary word (after the four specials).
  public static let firstWord = 4
  public static let specials = ["<pad>", "<start>", "<end>", "<unk>"]

  public let words: [String]
  private let ids: [String: Int]

  /// A vocabulary from a full word list (as stored in a model file); the first four must be the specials.
  public init(words: [String]) throws {
    guard words.count >= 4, Array(words.prefix(4)) == Vocabulary.specials else {
      throw CaptionError(
        .badModel, path: "vocab", "the first four words must be <pad> <start> <end> <unk>")
    }
    var ids: [String: Int] = [:]
    for (id, word) in words.enumerated() {
      guard ids[word] == nil else {
        throw CaptionError(.badModel, path: "vocab", "the word \"\(word)\" appears twice")
      }
      ids[word] = id
    }
    self.words = words
    self.ids = ids
  }

  /// The specials followed by `words` (which must not contain them).
  public init(specialsAnd words: [String]) {
    try! self.init(words: Vocabulary.specials + words)
  }

  public var count: Int { words.count }

  /// The id of a word, `<unk>` for a word not in the list.
  public func id(_ word: String) -> Int { ids[word] ?? Vocabulary.unk }

  /// The word of an id; `<unk>` for an id outside the list.
  public func word(_ id: Int) -> String {
    id >= 0 && id < words.count ? words[id] : Vocabulary.specials[Vocabulary.unk]
  }
}
