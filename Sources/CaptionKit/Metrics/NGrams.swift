/// The shared representation the COCO metrics work on: captions as arrays of interned word ids, and
/// each caption's n-grams (n = 1…4) as a list of (interned n-gram id, count), sorted by id, so that
/// clipping and cosine similarities are merges of two sorted lists instead of dictionary look-ups.

/// One caption's n-grams: `ids[i]` occurs `counts[i]` times; `order[i]` is its n (1…4).
struct NGramCounts {
  var ids: [Int32] = []
  var counts: [Int32] = []
  var order: [UInt8] = []
  /// Number of words in the caption.
  var length = 0
}

/// Interns words and n-grams to dense ids for one scoring run.
final class NGramTable {
  private var wordIDs: [String: Int32] = [:]
  /// An n-gram's id, keyed by (id of its first n−1 words + 1) << 32 | last word, so every n-gram
  /// is one 64-bit key (a unigram's prefix is "none", 0).
  private var ngramIDs: [UInt64: Int32] = [:]
  /// n of each interned n-gram.
  private(set) var ngramOrder: [UInt8] = []
  private var scratch: [(id: Int32, order: UInt8)] = []
  private var prefixes: [Int32] = []
  /// N-grams looked up so far (the interning work, which tests bound).
  private(set) var lookups = 0

  var ngramCount: Int { ngramOrder.count }

  func wordID(_ word: String) -> Int32 {
    if let id = wordIDs[word] { return id }
    let id = Int32(wordIDs.count)
    wordIDs[word] = id
    return id
  }

  func words(_ tokens: [String]) -> [Int32] { tokens.map(wordID) }

  private func ngramID(prefix: Int32, word: Int32, order: Int) -> Int32 {
    lookups += 1
    let key = UInt64(UInt32(bitPattern: prefix &+ 1)) << 32 | UInt64(UInt32(bitPattern: word))
    if let id = ngramIDs[key] { return id }
    let id = Int32(ngramOrder.count)
    ngramIDs[key] = id
    ngramOrder.append(UInt8(order))
    return id
  }

  /// The counts of every n-gram (n = 1…maxN) of `words`, sorted by n-gram id.
  func counts(_ words: [Int32], maxN: Int = 4) -> NGramCounts {
    scratch.removeAll(keepingCapacity: true)
    let length = words.count
    // The n-gram starting at `start` extends the (n−1)-gram starting there: prefix ids per start.
    if prefixes.count < length { prefixes = [Int32](repeating: -1, count: length) }
    for start in 0..<length { prefixes[start] = -1 }
    for n in 1...maxN where n <= length {
      for start in 0...(length - n) {
        let id = ngramID(prefix: prefixes[start], word: words[start + n - 1], order: n)
        prefixes[start] = id
        scratch.append((id, UInt8(n)))
      }
    }
    scratch.sort { $0.id < $1.id }
    var result = NGramCounts()
    result.length = length
    result.ids.reserveCapacity(scratch.count)
    for entry in scratch {
      if let last = result.ids.last, last == entry.id {
        result.counts[result.counts.count - 1] += 1
      } else {
        result.ids.append(entry.id)
        result.counts.append(1)
        result.order.append(entry.order)
      }
    }
    return result
  }
}

/// Python's `str.split()` on the caption joined with spaces: the COCO code re-splits captions on any
/// whitespace before BLEU and CIDEr, so a token holding a non-breaking space (the PTB tokenizer's
/// `1 1/2`) counts as two words there (but as one in ROUGE-L, which splits on " ").
func pythonWhitespaceSplit(_ tokens: [String]) -> [String] {
  guard tokens.contains(where: { $0.isEmpty || $0.unicodeScalars.contains(where: isPythonWhitespace) }) else {
    return tokens
  }
  var result: [String] = []
  for token in tokens {
    result += token.unicodeScalars.split(whereSeparator: isPythonWhitespace).map {
      String(String.UnicodeScalarView($0))
    }
  }
  return result
}

/// The characters Python's `str.isspace()` accepts.
func isPythonWhitespace(_ scalar: Unicode.Scalar) -> Bool {
  switch scalar.value {
  case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F,
    0x3000:
    return true
  default:
    return false
  }
}
