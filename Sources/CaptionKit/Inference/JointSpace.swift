import FoundationEssentials
import Glibc

/// A loaded model's joint image–sentence space (SPEC §2 `embed`, `index`, `search`): unit vectors of
/// texts and images, and the model's hash that ties an index to it.
public final class JointSpace {
  public let captioner: Captioner
  public let retrieval: RetrievalModel
  public let modelPath: String
  /// FNV-1a (64 bits) of the model file's bytes, 16 lower-case hexadecimal digits.
  public let modelHash: String
  /// A query keeps its first words only (captions are far shorter).
  public static let maximumQueryWords = 100

  /// Loads the model; its file is read and hashed on a second thread meanwhile.
  public convenience init(modelPath: String) throws {
    let hashing = Background {
      try JointSpace.hash(RegularFile.read(modelPath, maximumBytes: Int.max, what: "model"))
    }
    let captioner: Captioner
    do {
      captioner = try Captioner(modelPath: modelPath)
    } catch {
      _ = try? hashing.value()
      throw error
    }
    try self.init(captioner: captioner, modelPath: modelPath, modelHash: try hashing.value())
  }

  public convenience init(captioner: Captioner, modelPath: String) throws {
    try self.init(
      captioner: captioner, modelPath: modelPath,
      modelHash: JointSpace.hash(try RegularFile.read(modelPath, maximumBytes: Int.max, what: "model")))
  }

  private init(captioner: Captioner, modelPath: String, modelHash: String) throws {
    guard let retrieval = captioner.model.retrieval else {
      throw CaptionError.noRetrievalPart(path: modelPath)
    }
    self.captioner = captioner
    self.retrieval = retrieval
    self.modelPath = modelPath
    self.modelHash = modelHash
  }

  public var dimension: Int { retrieval.config.dim }

  /// FNV-1a, 64 bits: h = (h xor byte) × 2⁴⁰ + 2⁸ + 0xb3, from h = 0xcbf29ce484222325. Each step
  /// needs the one before, so the loop only keeps the per-byte work minimal: a raw pointer, no bounds
  /// checks, no iterator.
  static func hash(_ data: [UInt8]) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    data.withUnsafeBufferPointer { bytes in
      guard var byte = bytes.baseAddress else { return }
      let end = byte + bytes.count
      while byte < end {
        h = (h ^ UInt64(byte.pointee)) &* 0x100_0000_01b3
        byte += 1
      }
    }
    let digits = String(h, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
  }

  /// The word ids of a text as training reads captions (PTB tokenisation of its first 10 000
  /// characters, unknown words → `<unk>`), its first `maximumQueryWords` words. An empty text, or one
  /// of no known word, is an error naming it as `what`.
  public func words(_ text: String, what: String = "query") throws -> [Int] {
    let tokens = PTBTokenizer.tokenize(String(text.prefix(CaptionEncoding.maximumCaptionCharacters)))
    guard !tokens.isEmpty else { throw CaptionError(.invalidArgument, path: what, "the text holds no word") }
    let ids = tokens.prefix(JointSpace.maximumQueryWords).map { captioner.vocabulary.id($0) }
    guard ids.contains(where: { $0 != Vocabulary.unk }) else {
      throw CaptionError(
        .invalidArgument, path: what,
        "no word of the text is in the model's vocabulary (\(captioner.vocabulary.count - 4) words, e.g. "
          + captioner.vocabulary.words.dropFirst(4).prefix(5).joined(separator: ", ") + ")")
    }
    return ids
  }

  /// The unit vector [D] of one text.
  public func textVector(_ text: String, what: String = "query") throws -> [Float] {
    let ids = try words(text, what: what)
    return retrieval.sentences.forward(tokens: ids, steps: ids.count, lengths: [ids.count]).array
  }

  /// The unit vectors [n, D] of preprocessed images (at least one).
  public func imageVectors(_ images: [RGBImage]) -> Tensor {
    retrieval.images.forward(captioner.encode(images)).clone()
  }

  /// The unit vectors of image files, `batchSize` at a time: per path its vector or its error.
  public func imageVectors(paths: [String], batchSize: Int = 32) -> [Result<[Float], CaptionError>] {
    vectors(paths: paths, batchSize: batchSize) { retrieval.images.forward($0) }
  }

  /// Per path, `transform` of its image vector v (a row of `transform`'s [n, width] result), or its
  /// error.
  private func vectors(paths: [String], batchSize: Int, transform: (_ v: Tensor) -> Tensor)
    -> [Result<[Float], CaptionError>]
  {
    var vectors = [[Float]?](repeating: nil, count: paths.count)
    let errors = captioner.encode(paths: paths, batchSize: batchSize) { indices, v in
      let rows = transform(v)
      let width = rows.shape[1]
      for (row, i) in indices.enumerated() {
        vectors[i] = Array(rows.buffer[row * width..<(row + 1) * width])
      }
    }
    return zip(vectors, errors).map { vector, error in vector.map { .success($0) } ?? .failure(error!) }
  }

  /// The image index at `path` (`ImageIndex.load`), which must have been made with this model.
  public func index(path: String) throws -> ImageIndex {
    try check(try ImageIndex.load(path: path), path: path)
  }

  /// `index`, the index read from `path`, when it was made with this model; an error otherwise.
  public func check(_ index: ImageIndex, path: String) throws -> ImageIndex {
    guard index.modelHash == modelHash, index.dim == dimension else {
      throw CaptionError(.badModel, path: path, "the index was made with another model than \(modelPath)")
    }
    return index
  }

  /// One result of a search as JSON, `{"image": PATH, "score": FLOAT}` (SPEC §2 `search --json`).
  public static func resultJSON(path: String, score: Float) -> String {
    "{\"image\": \(JSONText.quoted(path)), \"score\": \(DescribeOutput.jsonNumber(Double(score)))}"
  }

  /// SPEC §2 `evaluate --retrieval`: the images (each with its captions) ranked against the
  /// captions and back, in folds of `foldSize` images, by `ranker`. Images that cannot be read are
  /// left out; captions with no word are left out.
  public func retrievalMetrics(
    images: [DatasetImage], batchSize: Int = 32, ranker: RetrievalRanker = .embedding,
    foldSize: Int = RetrievalMetrics.foldSize
  ) -> [String: Double]? {
    let generative = ranker == .generative
    var imageRows: [Float] = []  // u, or v for the generative ranker
    var sentenceRows: [Float] = []  // s (embedding)
    var sentenceWords: [[Int]] = []  // word ids (generative)
    var imageOf: [Int] = []
    var count = 0
    let outcomes = vectors(paths: images.map(\.path), batchSize: batchSize) {
      generative ? $0 : retrieval.images.forward($0)
    }
    for (image, outcome) in zip(images, outcomes) {
      guard case .success(let vector) = outcome else { continue }
      var described = false
      for caption in image.captions {
        guard let ids = try? words(caption, what: image.path) else { continue }
        if generative {
          sentenceWords.append(ids)
        } else {
          sentenceRows +=
            retrieval.sentences.forward(tokens: ids, steps: ids.count, lengths: [ids.count]).array
        }
        imageOf.append(count)
        described = true
      }
      if described {
        imageRows += vector
        count += 1
      }
    }
    guard count > 0 else { return nil }
    guard generative else {
      return RetrievalMetrics.evaluate(
        images: Tensor(shape: [count, dimension], values: imageRows),
        sentences: Tensor(shape: [imageOf.count, dimension], values: sentenceRows), imageOf: imageOf,
        foldSize: foldSize)
    }
    // each image is scored against the captions of its fold only (captions are in image order)
    var firstCaption = [Int](repeating: imageOf.count, count: count + 1)
    for (m, n) in imageOf.enumerated().reversed() { firstCaption[n] = m }
    let dv = imageRows.count / count
    let scores = GenerativeRanker.scores(
      model: captioner.model, imageVectors: Tensor(shape: [count, dv], values: imageRows),
      captions: sentenceWords
    ) { n in
      let foldStart = n / foldSize * foldSize
      return firstCaption[foldStart]..<firstCaption[min(foldStart + foldSize, count)]
    }
    let captionCount = imageOf.count
    return RetrievalMetrics.evaluate(imageCount: count, imageOf: imageOf, foldSize: foldSize) {
      scores[$0 * captionCount + $1]
    }
  }

  /// The `top` best of `vectors` (n rows of D) for a unit query vector: (row, cosine), best first,
  /// ties by row.
  ///
  /// A partial selection: `best` holds the `top` best rows so far, in order; a row enters only when
  /// it beats the last of them (a later row never wins a tie), found by binary search. Rows in random
  /// order rarely enter once `best` is full, so this is ~n comparisons instead of a sort of n.
  public static func rank(query: [Float], vectors: UnsafePointer<Float>, count n: Int, top: Int) -> [(
    row: Int, score: Float
  )] {
    let d = query.count
    let keep = min(max(top, 0), n)
    guard keep > 0 else { return [] }
    var best: [(row: Int, score: Float)] = []
    best.reserveCapacity(keep + 1)
    query.withUnsafeBufferPointer { q in
      for row in 0..<n {
        var dot: Float = 0
        let v = vectors + row * d
        for j in 0..<d { dot += q[j] * v[j] }
        if best.count == keep && !(dot > best[keep - 1].score) { continue }
        // the first place whose score is below dot: equal scores stay ahead (smaller rows)
        var (low, high) = (0, best.count)
        while low < high {
          let middle = (low + high) / 2
          if best[middle].score >= dot { low = middle + 1 } else { high = middle }
        }
        best.insert((row, dot), at: low)
        if best.count > keep { best.removeLast() }
      }
    }
    return best
  }
}

/// How `evaluate --retrieval` scores an image against a caption (SPEC §2).
public enum RetrievalRanker: String, CaseIterable, Sendable {
  /// The cosine in the joint space.
  case embedding
  /// The captioner's log-probability of the caption per step (`GenerativeRanker`).
  case generative
}

/// An image index (SPEC §2 `index`): a safetensors file holding `embeddings` [N, D] (the images' unit
/// vectors) and the metadata `format` = `caption-index`, `version` = `1`, `model_hash`, `dim`, and
/// `images` = a JSON array of `{"path", "size", "mtime"}` (bytes; modification time in whole
/// nanoseconds), row i describing embedding row i.
public struct ImageIndex {
  public struct Entry: Codable, Equatable {
    public var path: String
    public var size: Int
    public var mtime: Int
  }
  public var modelHash: String
  public var dim: Int
  public var entries: [Entry]
  /// [N·D] row-major.
  public var embeddings: [Float]

  public static let format = "caption-index"

  public init(modelHash: String, dim: Int, entries: [Entry] = [], embeddings: [Float] = []) {
    self.modelHash = modelHash
    self.dim = dim
    self.entries = entries
    self.embeddings = embeddings
  }

  /// Reads and checks an index; every defect is one error naming the file.
  public static func load(path: String) throws -> ImageIndex {
    func bad(_ reason: String) -> CaptionError { CaptionError(.badModel, path: path, reason) }
    let file: SafetensorsFile
    do {
      file = try Safetensors.read(path: path)
    } catch let error as CaptionError {
      throw CaptionError(error.kind, path: path, "not an image index: " + error.reason)
    }
    guard file.metadata["format"] == format, file.metadata["version"] == "1" else {
      throw bad("not an image index (metadata format is not \"\(format)\" version 1)")
    }
    guard let hash = file.metadata["model_hash"], let dim = file.metadata["dim"].flatMap(Int.init), dim >= 1,
      let imagesText = file.metadata["images"]
    else { throw bad("the index metadata lacks model_hash, dim or images") }
    let entries = try readEntries(imagesText, path: path)
    guard let tensor = file.tensors["embeddings"], file.tensors.count == 1 else {
      throw bad("the index must hold exactly one tensor, \"embeddings\"")
    }
    guard tensor.shape == [entries.count, dim] || (entries.isEmpty && tensor.count == 0) else {
      throw bad("embeddings have shape \(tensor.shape), expected [\(entries.count), \(dim)]")
    }
    guard file.nonFinite.isEmpty else { throw bad("embeddings hold a value that is not finite") }
    return ImageIndex(modelHash: hash, dim: dim, entries: entries, embeddings: tensor.array)
  }

  /// The `images` list, read with the project's JSON parser (Foundation's `JSONDecoder` took most
  /// of a search's time on 10 000 images). Keys other than `path`, `size` and `mtime` are ignored.
  static func readEntries(_ text: String, path: String) throws -> [Entry] {
    var utf8 = text
    let parsed: JSONValue
    do {
      parsed = try utf8.withUTF8 { try JSONValue.parse(UnsafeRawBufferPointer($0)) }
    } catch let error as JSONSyntaxError {
      throw CaptionError(
        .badModel, path: path,
        "the index's images list is malformed: \(error.reason) at byte \(error.offset) of the list")
    }
    let list = JSONPlace(file: path, place: "images", kind: .badModel)
    return try list.array(parsed).enumerated().map { i, item in
      let place = list.index(i)
      let object = try place.object(item)
      return Entry(
        path: try place.child("path").string(object["path"]),
        size: try place.child("size").integer(object["size"]),
        mtime: try place.child("mtime").integer(object["mtime"]))
    }
  }

  /// Writes the index atomically.
  public func save(path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let images = String(decoding: try encoder.encode(entries), as: UTF8.self)
    let tensor = Tensor(shape: [entries.count, dim], values: embeddings)
    try Safetensors.write(
      path: path, tensors: [("embeddings", tensor)],
      metadata: [
        "format": ImageIndex.format, "version": "1", "model_hash": modelHash, "dim": String(dim),
        "images": images,
      ])
  }

  /// The size and modification time of a file now (nil when it cannot be read).
  public static func stamp(path: String) -> (size: Int, mtime: Int)? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return (Int(info.st_size), Int(info.st_mtim.tv_sec) * 1_000_000_000 + Int(info.st_mtim.tv_nsec))
  }

  /// Brings the index up to `paths`: entries of files no longer listed are dropped, files whose size
  /// and modification time are unchanged keep their vectors, and only new or changed files are
  /// encoded (`encode`). Returns the updated index, the count encoded and the failures (skipped).
  public func updated(
    paths: [String], encode: ([String]) -> [Result<[Float], CaptionError>]
  ) -> (index: ImageIndex, encoded: Int, failures: [CaptionError]) {
    var known: [String: Int] = [:]
    for (i, entry) in entries.enumerated() { known[entry.path] = i }
    var result = ImageIndex(modelHash: modelHash, dim: dim)
    var pending: [(path: String, stamp: (size: Int, mtime: Int)?)] = []
    var order: [String] = []
    var kept: [String: [Float]] = [:]
    for path in paths {
      let stamp = ImageIndex.stamp(path: path)
      order.append(path)
      if let i = known[path], let stamp, entries[i].size == stamp.size, entries[i].mtime == stamp.mtime {
        kept[path] = Array(embeddings[i * dim..<(i + 1) * dim])
      } else {
        pending.append((path, stamp))
      }
    }
    var failures: [CaptionError] = []
    var fresh: [String: ([Float], (size: Int, mtime: Int))] = [:]
    for ((path, stamp), outcome) in zip(pending, encode(pending.map(\.path))) {
      switch outcome {
      case .success(let vector): fresh[path] = (vector, stamp ?? (0, 0))
      case .failure(let error): failures.append(error)
      }
    }
    for path in order {
      if let vector = kept[path], let i = known[path] {
        result.entries.append(entries[i])
        result.embeddings += vector
      } else if let encoded = fresh[path] {
        result.entries.append(Entry(path: path, size: encoded.1.size, mtime: encoded.1.mtime))
        result.embeddings += encoded.0
      }
    }
    return (result, pending.count - failures.count, failures)
  }
}
