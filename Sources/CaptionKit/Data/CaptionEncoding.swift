import CShims
import Dispatch
import FoundationEssentials
import Glibc

/// A caption as token ids, without `<start>` and `<end>` (the batches add them).
public struct EncodedCaption: Equatable, Sendable {
  public var tokens: [Int]

  public init(tokens: [Int]) { self.tokens = tokens }
}

/// What encoding a set of captions did, for the command line to print.
public struct EncodingSummary: Equatable, Sendable, CustomStringConvertible {
  public var images = 0
  /// Captions read.
  public var captions = 0
  /// Captions encoded (read minus empty).
  public var encoded = 0
  /// Captions empty after tokenisation, skipped (SPEC §6).
  public var empty = 0
  /// Captions longer than `maxLength − 1` words, cut to that many.
  public var truncated = 0
  /// Images left with no caption at all (they are not trained on).
  public var imagesWithoutCaptions = 0
  /// Words kept, and how many of them became `<unk>`.
  public var words = 0
  public var unknownWords = 0

  public init() {}

  public var description: String {
    var parts = ["\(images) images", "\(encoded) captions"]
    if empty > 0 { parts.append("\(empty) empty captions skipped") }
    if truncated > 0 { parts.append("\(truncated) captions truncated") }
    if imagesWithoutCaptions > 0 { parts.append("\(imagesWithoutCaptions) images without captions") }
    let unknownShare = words == 0 ? 0 : 100 * Double(unknownWords) / Double(words)
    parts.append("\(words) words, \(String(cFormat: "%.1f", unknownShare))% <unk>")
    return parts.joined(separator: ", ")
  }
}

/// Tokenising and encoding captions for training (SPEC §3, §6).
public enum CaptionEncoding {
  /// Only a caption's first characters are tokenised (SPEC §5): training keeps at most
  /// `--max-length` − 1 words, and a longer text would only cost memory.
  public static let maximumCaptionCharacters = 10_000

  /// `PTBTokenizer.tokenize` of every caption: `[image][caption][word]`. Runs on all cores, a slice
  /// of images at a time; `progress(done, count)` follows the images tokenised. Ctrl-C/SIGTERM stops
  /// it (`Interrupted`) within a slice.
  public static func tokenize(_ images: [DatasetImage], progress: ((Int, Int) -> Void)? = nil) throws
    -> [[[String]]]
  {
    let results = ResultSlots<[[String]]>(count: images.count)
    let chunk = 256
    let slice = 64 * chunk
    for sliceStart in stride(from: 0, to: images.count, by: slice) {
      let sliceEnd = min(images.count, sliceStart + slice)
      let chunks = (sliceEnd - sliceStart + chunk - 1) / chunk
      DispatchQueue.concurrentPerform(iterations: chunks) { c in
        if caption_interrupt_requested() != 0 { return }  // the slice is dropped below
        for i in sliceStart + c * chunk..<min(sliceStart + (c + 1) * chunk, sliceEnd) {
          results.set(
            i, images[i].captions.map { PTBTokenizer.tokenize(String($0.prefix(maximumCaptionCharacters))) })
        }
      }
      try Interrupted.check()
      progress?(sliceEnd, images.count)
    }
    return results.values
  }

  /// Encodes tokenised captions: words to ids (`<unk>` for unknown words), at most `maxLength − 1`
  /// words kept (SPEC §3: N decoder steps, `<end>` included), empty captions skipped.
  /// `maxLength` must be at least 2.
  public static func encode(tokenized: [[[String]]], vocabulary: Vocabulary, maxLength: Int) throws
    -> (captions: [[EncodedCaption]], summary: EncodingSummary)
  {
    guard maxLength >= 2 else {
      throw CaptionError(.invalidArgument, path: "--max-length", "must be at least 2, not \(maxLength)")
    }
    let maxWords = maxLength - 1
    var summary = EncodingSummary()
    summary.images = tokenized.count
    var encoded: [[EncodedCaption]] = []
    encoded.reserveCapacity(tokenized.count)
    for image in tokenized {
      var captions: [EncodedCaption] = []
      captions.reserveCapacity(image.count)
      for words in image {
        summary.captions += 1
        if words.isEmpty {
          summary.empty += 1
          continue
        }
        if words.count > maxWords { summary.truncated += 1 }
        let ids = words.prefix(maxWords).map { vocabulary.id($0) }
        summary.words += ids.count
        summary.unknownWords += ids.reduce(0) { $0 + ($1 == Vocabulary.unk ? 1 : 0) }
        captions.append(EncodedCaption(tokens: ids))
      }
      summary.encoded += captions.count
      if captions.isEmpty { summary.imagesWithoutCaptions += 1 }
      encoded.append(captions)
    }
    return (encoded, summary)
  }

  /// Tokenises and encodes the captions of `images` (one entry per image, in order).
  public static func encode(images: [DatasetImage], vocabulary: Vocabulary, maxLength: Int) throws
    -> (captions: [[EncodedCaption]], summary: EncodingSummary)
  {
    try encode(tokenized: try tokenize(images), vocabulary: vocabulary, maxLength: maxLength)
  }
}

/// Slots written by concurrent iterations, each at its own index; read after they all finish.
/// `@unchecked Sendable`: every index is written by exactly one iteration, and `values` is read
/// only after `concurrentPerform` returns, so no two threads touch one slot.
final class ResultSlots<Value>: @unchecked Sendable {
  private let storage: UnsafeMutablePointer<Value?>
  private let count: Int

  init(count: Int) {
    self.count = count
    storage = UnsafeMutablePointer<Value?>.allocate(capacity: max(count, 1))
    storage.initialize(repeating: nil, count: count)
  }

  deinit {
    storage.deinitialize(count: count)
    storage.deallocate()
  }

  func set(_ index: Int, _ value: Value) { storage[index] = value }

  var values: [Value] { (0..<count).map { storage[$0]! } }
}

/// The train and val splits of a dataset, encoded for training: what `caption train` needs before
/// it builds its loaders. The training captions are tokenised once, for the vocabulary and the
/// encoding both.
public struct PreparedCaptions {
  public var vocabulary: Vocabulary
  public var train: [DatasetImage]
  public var trainCaptions: [[EncodedCaption]]
  public var trainSummary: EncodingSummary
  public var val: [DatasetImage]
  public var valCaptions: [[EncodedCaption]]
  public var valSummary: EncodingSummary

  /// Builds the vocabulary from the train split (`minCount`), unless `vocabulary` is given (a model
  /// loaded with `--init` keeps its own), and encodes both splits with at most `maxLength − 1` words.
  /// An error when the train split has no images, or no caption with a word. `progress(done, count)`
  /// follows the images whose captions are tokenised, train and val together.
  public static func prepare(
    _ dataset: Dataset, minCount: Int, maxLength: Int, vocabulary: Vocabulary? = nil,
    data: String = "dataset",
    progress: ((Int, Int) -> Void)? = nil
  ) throws -> PreparedCaptions {
    let train = try dataset.nonEmptySplit(.train, data: data)
    let val = dataset.split(.val)
    guard minCount >= 1 else {
      throw CaptionError(.invalidArgument, path: "--min-count", "must be at least 1, not \(minCount)")
    }
    let total = train.count + val.count
    let tokenized = try CaptionEncoding.tokenize(train) { done, _ in progress?(done, total) }
    guard tokenized.contains(where: { $0.contains { !$0.isEmpty } }) else {
      throw CaptionError(.badDataset, path: data, "no caption of the train split holds a word")
    }
    let words = vocabulary ?? VocabularyBuilder.build(tokenized: tokenized, minCount: minCount)
    let encodedTrain = try CaptionEncoding.encode(
      tokenized: tokenized, vocabulary: words, maxLength: maxLength)
    let encodedVal = try CaptionEncoding.encode(
      tokenized: try CaptionEncoding.tokenize(val) { done, _ in progress?(train.count + done, total) },
      vocabulary: words,
      maxLength: maxLength)
    return PreparedCaptions(
      vocabulary: words, train: train, trainCaptions: encodedTrain.captions,
      trainSummary: encodedTrain.summary,
      val: val, valCaptions: encodedVal.captions, valSummary: encodedVal.summary)
  }
}
