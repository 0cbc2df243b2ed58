import FoundationEssentials
import Glibc

/// Builds the vocabulary from training captions (SPEC §6): the words seen at least `minCount` times,
/// most frequent first, ties in alphabetical order (so the result depends only on the captions),
/// after the four specials.
public enum VocabularyBuilder {
  /// Word counts over tokenised captions (`tokenized[image][caption][word]`).
  public static func wordCounts(_ tokenized: [[[String]]]) -> [String: Int] {
    var counts: [String: Int] = [:]
    for image in tokenized {
      for caption in image {
        for word in caption { counts[word, default: 0] += 1 }
      }
    }
    return counts
  }

  /// The vocabulary of tokenised captions. A word spelled like a special token is left out
  /// (it maps to `<unk>`).
  public static func build(tokenized: [[[String]]], minCount: Int) -> Vocabulary {
    let counts = wordCounts(tokenized)
    let specials = Set(Vocabulary.specials)
    let kept = counts.filter { $0.value >= max(minCount, 1) && !specials.contains($0.key) }
    let sorted = kept.sorted { a, b in a.value != b.value ? a.value > b.value : a.key < b.key }
    return Vocabulary(specialsAnd: sorted.map(\.key))
  }

  /// The vocabulary of `images`' captions (pass the training split), tokenised with `PTBTokenizer`.
  /// An error when no caption holds a word.
  public static func build(images: [DatasetImage], minCount: Int) throws -> Vocabulary {
    guard minCount >= 1 else {
      throw CaptionError(.invalidArgument, path: "--min-count", "must be at least 1, not \(minCount)")
    }
    let tokenized = try CaptionEncoding.tokenize(images)
    guard tokenized.contains(where: { $0.contains { !$0.isEmpty } }) else {
      throw CaptionError(.badDataset, path: "training split", "no caption holds a word")
    }
    return build(tokenized: tokenized, minCount: minCount)
  }
}
