import Foundation
import XCTest

@testable import CaptionKit

/// The dataset readers of SPEC §5 on small files in each format's real layout
/// (`scripts/make_data_fixtures.py`), their errors, the vocabulary and caption encoding of SPEC §6.
final class DatasetTests: XCTestCase {
  let data = fixturePath("data")

  /// Expects a `.badDataset` (or given kind) error whose text names `file` and contains `place`.
  func assertDatasetError(
    _ kind: CaptionError.Kind = .badDataset, file: String, mentions place: String,
    line: UInt = #line, _ body: () throws -> Void
  ) {
    do {
      try body()
      XCTFail("no error for \(file)", line: line)
    } catch let error as CaptionError {
      XCTAssertEqual(error.kind, kind, "\(error)", line: line)
      XCTAssertEqual(error.path, file, "\(error)", line: line)
      XCTAssertTrue(error.reason.contains(place), "\"\(error.reason)\" lacks \"\(place)\"", line: line)
      XCTAssertFalse(error.description.contains("\n"), line: line)
    } catch {
      XCTFail("not a CaptionError: \(error)", line: line)
    }
  }

  func testKarpathyFlickr8kLayout() throws {
    let file = data + "/dataset_flickr8k.json"
    let dataset = try Dataset.load(data: file, images: "/photos")
    XCTAssertEqual(dataset.source, "karpathy")
    XCTAssertNil(dataset.scenesPath)
    XCTAssertEqual(dataset.images.map(\.id), [0, 1, 2, 3])  // imgid
    XCTAssertEqual(dataset.images.map(\.split), [.train, .train, .val, .test])
    XCTAssertEqual(dataset.images[0].path, "/photos/2513260012_03d33305cf.jpg")
    XCTAssertEqual(
      dataset.images[0].captions,
      ["A black dog runs across the grass.", "A dog is running on a lawn ."])  // raw, untouched
    XCTAssertEqual(dataset.split(.test).map(\.captions.count), [3])
    // Without --images the file's folder is the base.
    let beside = try Dataset.load(data: file)
    XCTAssertEqual(beside.images[2].path, data + "/3338291921_fe7ae0c8f8.jpg")
  }

  func testKarpathyCocoLayoutUsesCocoidFilepathAndRestval() throws {
    let dataset = try Dataset.load(data: data + "/dataset_coco.json", images: "coco/")
    XCTAssertEqual(dataset.images.map(\.id), [391895, 522418, 57870, 184613])  // cocoid over imgid
    XCTAssertEqual(dataset.images.map(\.split), [.test, .train, .train, .val])  // restval → train
    XCTAssertEqual(dataset.images[0].path, "coco/val2014/COCO_val2014_000000391895.jpg")
    XCTAssertEqual(dataset.images[2].path, "coco/train2014/COCO_train2014_000000057870.jpg")
    XCTAssertEqual(dataset.split(.train).map(\.id), [522418, 57870])
    XCTAssertEqual(dataset.summary, "karpathy: 2 train, 1 val, 1 test images, 6 captions")
  }

  func testKarpathyIdFallsBackToPosition() throws {
    let folder = temporaryFolder()
    let file = folder + "/k.json"
    try AtomicFile.write(
      Data(
        #"{"images": [{"filename": "a.jpg", "split": "train", "sentences": [{"raw": "x"}]}, {"filename": "b.jpg", "split": "val", "sentences": []}]}"#
          .utf8), to: file)
    let dataset = try Dataset.load(data: file)
    XCTAssertEqual(dataset.images.map(\.id), [0, 1])
    XCTAssertEqual(dataset.images[1].captions, [])
  }

  func testCocoCaptionsTrainAndValFiles() throws {
    let train = data + "/coco/annotations/captions_train2014.json"
    let val = data + "/coco/annotations/captions_val2014.json"
    let images = data + "/coco/images"
    let dataset = try Dataset.load(data: train, images: images, valData: val)
    XCTAssertEqual(dataset.source, "coco")
    XCTAssertEqual(dataset.split(.train).map(\.id), [57870, 384029, 222016])
    XCTAssertEqual(dataset.split(.val).map(\.id), [391895, 522418])
    XCTAssertTrue(dataset.split(.test).isEmpty)
    // Annotations are gathered per image, in file order; an image without any keeps an empty list.
    let byId = Dictionary(uniqueKeysWithValues: dataset.images.map { ($0.id, $0) })
    XCTAssertEqual(
      Set(byId[57870]!.captions),
      ["A restaurant with wooden tables.", "An empty dining room with chairs."])
    XCTAssertEqual(byId[222016]!.captions, [])
    // COCO_<set>_ names resolve into the set's subfolder when the images are there.
    XCTAssertEqual(byId[57870]!.path, images + "/train2014/COCO_train2014_000000057870.jpg")
    XCTAssertEqual(byId[391895]!.path, images + "/val2014/COCO_val2014_000000391895.jpg")
  }

  func testCocoFileEvaluatedIsTheRequestedSplit() throws {
    let val = data + "/coco/annotations/captions_val2014.json"
    let dataset = try Dataset.load(data: val, evaluating: .test)
    XCTAssertEqual(dataset.split(.test).map(\.id), [391895, 522418])
    XCTAssertTrue(dataset.split(.train).isEmpty)
  }

  func testFlickr8kTokenFileAndStandardLists() throws {
    let dataset = try Dataset.load(data: data + "/flickr8k/Flickr8k.token.txt", images: "/f8k")
    XCTAssertEqual(dataset.source, "flickr8k")
    // Ids: order of first appearance in the token file; the image in no list is left out.
    XCTAssertEqual(dataset.images.map(\.id), [0, 1, 2, 3])
    XCTAssertEqual(dataset.split(.train).map(\.id), [0, 1])
    XCTAssertEqual(dataset.split(.val).map(\.id), [2])
    XCTAssertEqual(dataset.split(.test).map(\.id), [3])
    XCTAssertEqual(dataset.images[0].path, "/f8k/1000268201_693b08cb0e.jpg")
    XCTAssertEqual(
      dataset.images[1].captions,
      ["A black dog and a spotted dog are fighting", "Two dogs on pavement moving toward each other ."])
  }

  func testFlickr8kNamedListsOverrideStandardOnes() throws {
    let folder = temporaryFolder()
    let list = folder + "/mytrain.txt"
    try AtomicFile.write(Data("1007129816_e794419615.jpg\r\n".utf8), to: list)
    let dataset = try Dataset.load(
      data: data + "/flickr8k/Flickr8k.token.txt", trainList: list, valList: nil)
    XCTAssertEqual(dataset.split(.train).map(\.id), [4])
    XCTAssertEqual(dataset.split(.val).map(\.id), [2])  // standard dev list still beside the file
    // A listed image missing from the token file names the list and line.
    let wrong = folder + "/wrong.txt"
    try AtomicFile.write(Data("1007129816_e794419615.jpg\nnothere.jpg\n".utf8), to: wrong)
    assertDatasetError(file: wrong, mentions: "line 2: nothere.jpg") {
      _ = try Dataset.load(data: data + "/flickr8k/Flickr8k.token.txt", trainList: wrong)
    }
  }

  func testDatasetDirectoryWithScenes() throws {
    let dataset = try Dataset.load(data: data + "/shapes")
    XCTAssertEqual(dataset.source, "directory")
    XCTAssertEqual(dataset.scenesPath, data + "/shapes/scenes.json")
    XCTAssertEqual(
      dataset.images.map(\.path), [data + "/shapes/images/00000.png", data + "/shapes/images/00001.png"])
    XCTAssertEqual(dataset.images.map(\.split), [.train, .val])
  }

  func testMalformedFilesNameFileAndPlace() {
    let bad = data + "/bad"
    assertDatasetError(file: bad + "/bad_json.json", mentions: "bad JSON: line 3") {
      _ = try Dataset.load(data: bad + "/bad_json.json")
    }
    assertDatasetError(file: bad + "/missing_sentences.json", mentions: "images[1].sentences: missing") {
      _ = try Dataset.load(data: bad + "/missing_sentences.json")
    }
    assertDatasetError(file: bad + "/missing_raw.json", mentions: "images[0].sentences[1].raw: missing") {
      _ = try Dataset.load(data: bad + "/missing_raw.json")
    }
    assertDatasetError(
      file: bad + "/unknown_split.json", mentions: "images[1].split: unknown split \"validation\""
    ) {
      _ = try Dataset.load(data: bad + "/unknown_split.json")
    }
    assertDatasetError(file: bad + "/coco_unknown_image.json", mentions: "annotations[1].image_id: 7") {
      _ = try Dataset.load(data: bad + "/coco_unknown_image.json")
    }
    assertDatasetError(file: bad + "/coco_string_id.json", mentions: "images[0].id: expected an integer") {
      _ = try Dataset.load(data: bad + "/coco_string_id.json")
    }
    assertDatasetError(file: bad + "/no_train.json", mentions: "the train split has no images") {
      _ = try Dataset.load(data: bad + "/no_train.json")
    }
    assertDatasetError(file: bad + "/bad_token_line.txt", mentions: "line 2: expected NAME#k<TAB>caption") {
      _ = try Dataset.load(data: bad + "/bad_token_line.txt")
    }
    assertDatasetError(file: bad + "/neither.json", mentions: "neither a Karpathy") {
      _ = try Dataset.load(data: bad + "/neither.json")
    }
    assertDatasetError(.unreadable, file: bad + "/absent.json", mentions: "no such file") {
      _ = try Dataset.load(data: bad + "/absent.json")
    }
    assertDatasetError(file: bad, mentions: "captions.json") {
      _ = try Dataset.load(data: bad)
    }
    assertDatasetError(.notAFile, file: "/dev/zero", mentions: "not a regular file") {
      _ = try Dataset.load(data: "/dev/zero")  // endless: must not be read into memory
    }
  }

  func testEmptyAndBinaryFiles() throws {
    let folder = temporaryFolder()
    let withMark = folder + "/bom.json"
    try AtomicFile.write(
      [0xEF, 0xBB, 0xBF]
        + Array(#"{"images": [{"filename": "a.jpg", "split": "train", "sentences": []}]}"#.utf8),
      to: withMark)
    XCTAssertEqual(try Dataset.load(data: withMark).images.count, 1)
    let empty = folder + "/empty.json"
    try AtomicFile.write(Data("{\"images\": []}".utf8), to: empty)
    assertDatasetError(file: empty, mentions: "no images") { _ = try Dataset.load(data: empty) }
    let binary = folder + "/noise.bin"
    try AtomicFile.write([0xFF, 0xD8, 0xFF, 0x00, 0x80, 0x81], to: binary)
    assertDatasetError(file: binary, mentions: "not UTF-8") { _ = try Dataset.load(data: binary) }
    let text = folder + "/notes.txt"
    try AtomicFile.write(Data("just some notes\n".utf8), to: text)
    assertDatasetError(file: text, mentions: "not a dataset") { _ = try Dataset.load(data: text) }
  }

  // MARK: - JSON

  /// The dataset JSON parser agrees with Foundation's on values, escapes and numbers, and refuses
  /// bad documents with a line and column.
  func testJSONParserMatchesFoundation() throws {
    // Both sides as one canonical text: numbers as Double, keys sorted.
    func canonical(_ value: JSONValue) -> String {
      switch value {
      case .null: return "null"
      case .bool(let b): return "\(b)"
      case .integer(let n): return "\(Double(n))"
      case .number(let n): return "\(n)"
      case .string(let s): return "s" + s.debugDescription
      case .array(let a): return "[" + a.map(canonical).joined(separator: ",") + "]"
      case .object(let o):
        return "{"
          + o.members.sorted { $0.key < $1.key }.map { "\($0.key.debugDescription):\(canonical($0.value))" }
          .joined(separator: ",") + "}"
      }
    }
    func canonical(_ value: Any) -> String {
      switch value {
      case is NSNull: return "null"
      case let s as String: return "s" + s.debugDescription
      case let n as NSNumber:
        return String(cString: n.objCType) == "c" ? "\(n.boolValue)" : "\(n.doubleValue)"
      case let a as [Any]: return "[" + a.map(canonical).joined(separator: ",") + "]"
      case let o as [String: Any]:
        return "{"
          + o.keys.sorted().map { "\($0.debugDescription):\(canonical(o[$0]!))" }.joined(separator: ",") + "}"
      default: return "?"
      }
    }
    let documents = [
      #"{"a": [1, -2, 3.25, -0.5e-3, 1E3, 0, 123456789012345678], "b": {"c": null, "d": true, "e": false}}"#,
      #"["caf\u00e9 \ud83d\udc15 \"q\" \\ \/ \b\f\n\r\t", "naïve – ok", ""]"#,
      " \n\t [ ] ",
    ]
    for text in documents {
      let ours = canonical(try JSONValue.parse(Array(text.utf8), file: "t.json"))
      let theirs = canonical(
        try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]))
      XCTAssertEqual(ours, theirs, text)
      XCTAssertFalse(ours.contains("?"))
    }
    let bad: [(String, String)] = [
      ("{\"a\": 1,\n \"b\" 2}", "line 2, column 6: expected ':'"),
      ("[1, 2", "line 1, column 6: unexpected end of file"),
      ("[01]", "line 1, column 3: expected ','"),
      ("[1.]", "line 1, column 4: invalid number"),
      ("[\"a\tb\"]", "line 1, column 4: control character"),
      ("[\"\\x\"]", "invalid escape"),
      ("{\"é\": tru}", "line 1, column 7: invalid value"),
      ("[1] x", "unexpected text after"),
      ("", "expected a value"),
      (String(repeating: "[", count: 100_000), "nested deeper than 512"),
      // Strict: no repeated key, valid UTF-8, no half of a surrogate pair; the byte is named.
      (
        "{\"a\": 1, \"b\": 2,\n \"a\": 3}", "line 2, column 2: key \"a\" appears twice in an object (byte 18)"
      ),
      (#"["a\ud83dz"]"#, "line 1, column 4: unpaired surrogate in a \\u escape (byte 3)"),
      (#"["\udc15"]"#, "unpaired surrogate"),
    ]
    for (text, expected) in bad {
      XCTAssertThrowsError(try JSONValue.parse(Array(text.utf8), file: "t.json"), text) {
        let error = $0 as? CaptionError
        XCTAssertEqual(error?.path, "t.json")
        XCTAssertTrue(
          error?.reason.contains(expected) ?? false, "\(text.prefix(40)): \(String(describing: error))")
      }
    }
    XCTAssertThrowsError(try JSONValue.parse([0x5B, 0x22, 0x61, 0xFF, 0x22, 0x5D], file: "t.json")) {
      let reason = ($0 as? CaptionError)?.reason ?? ""
      XCTAssertTrue(reason.contains("line 1, column 2: invalid UTF-8 in a string (byte 1)"), reason)
    }
  }

  /// Integers are exact: written as an integer and within Int's range, or an error where one is
  /// required; any number reads as a number.
  func testIntegersAreExact() throws {
    let text = #"[9223372036854775807, -9223372036854775808, 9223372036854775808, 2.0, 1e3, 1.5, -0, "7"]"#
    guard case .array(let values) = try JSONValue.parse(Array(text.utf8), file: "t.json") else {
      return XCTFail("not an array")
    }
    XCTAssertEqual(values.map(\.integerValue), [Int.max, Int.min, nil, nil, nil, nil, 0, nil])
    XCTAssertEqual(
      values.map(\.doubleValue),
      [9.223372036854775807e18, -9.223372036854775808e18, 9.223372036854775808e18, 2, 1000, 1.5, 0, nil])
    let place = JSONPlace(file: "t.json", place: "images[0].id")
    XCTAssertEqual(try place.integer(values[0]), Int.max)
    for value in values[2...] where value.integerValue == nil {
      XCTAssertThrowsError(try place.integer(value)) {
        XCTAssertEqual("\($0)", "t.json: images[0].id: expected an integer")
      }
    }
    XCTAssertThrowsError(try place.integer(nil)) { XCTAssertEqual("\($0)", "t.json: images[0].id: missing") }
  }

  /// A dataset whose entry repeats a key is refused, naming the line and column.
  func testRepeatedKeyInADatasetIsAnError() throws {
    let path = temporaryFolder() + "/twice.json"
    try AtomicFile.write(
      Array(
        """
        {"images": [
          {"filename": "a.jpg", "split": "train", "split": "test", "sentences": []}]}
        """.utf8), to: path)
    assertDatasetError(file: path, mentions: "line 2, column 43: key \"split\" appears twice") {
      _ = try Dataset.load(data: path)
    }
  }

  /// Damaged copies of real-layout files (bytes changed, cut short) give errors or datasets, never a
  /// crash: each is parsed and, when it parses, read as Karpathy, COCO and Flickr8k data.
  func testDamagedFilesNeverCrash() throws {
    let sources = [
      data + "/dataset_coco.json", data + "/coco/annotations/captions_train2014.json",
      data + "/flickr8k/Flickr8k.token.txt",
    ]
    var generator = SeededGenerator(seed: 11)
    var errors = 0
    for source in sources {
      let original = try DatasetFile.read(source)
      for _ in 0..<150 {
        var bytes = original
        for _ in 0..<(1 + Int(generator.next() % 3)) {
          let at = Int(generator.next() % UInt64(bytes.count))
          let pick = "{}[]\",:0-9eE.\\ #\tnul".utf8
          bytes[at] =
            generator.next() % 2 == 0
            ? UInt8(truncatingIfNeeded: generator.next())
            : Array(pick)[Int(generator.next() % UInt64(pick.count))]
        }
        if generator.next() % 3 == 0 { bytes.removeLast(Int(generator.next() % UInt64(bytes.count))) }
        do {
          if case .object(let root) = try JSONValue.parse(bytes, file: "f") {
            _ = try? KarpathyReader.read(json: root, file: "f", imageFolder: "")
            _ = try? COCOReader.read(json: root, file: "f", imageFolder: "", split: .train)
          }
        } catch {
          errors += 1
        }
        if let text = String(bytes: bytes, encoding: .utf8), Flickr8kReader.looksLikeTokenFile(text) {
          _ = try? Flickr8kReader.read(
            text: text, file: source, imageFolder: "", trainList: nil, valList: nil, testList: nil)
        }
      }
    }
    XCTAssertGreaterThan(errors, 0)  // the damage was seen
  }

  // MARK: - Vocabulary and encoding (SPEC §6)

  func testVocabularyMinCountAndDeterministicOrder() throws {
    let images = [
      DatasetImage(id: 0, path: "a", split: .train, captions: ["a dog and a cat.", "A Cat"]),
      DatasetImage(id: 1, path: "b", split: .train, captions: ["a bird", "zebra dog"]),
    ]
    // Counts: a 4, cat 2, dog 2, and 1, bird 1, zebra 1.
    let vocabulary = try VocabularyBuilder.build(images: images, minCount: 2)
    XCTAssertEqual(vocabulary.words, Vocabulary.specials + ["a", "cat", "dog"])
    let all = try VocabularyBuilder.build(images: images, minCount: 1)
    XCTAssertEqual(all.words, Vocabulary.specials + ["a", "cat", "dog", "and", "bird", "zebra"])
    // A word spelled like a special token is not added twice.
    let tricky = VocabularyBuilder.build(tokenized: [[["<unk>", "<unk>", "dog"]]], minCount: 1)
    XCTAssertEqual(tricky.words, Vocabulary.specials + ["dog"])
    XCTAssertThrowsError(try VocabularyBuilder.build(images: images, minCount: 0))
    XCTAssertThrowsError(
      try VocabularyBuilder.build(
        images: [DatasetImage(id: 0, path: "a", split: .train, captions: ["", " . "])], minCount: 1))
  }

  /// Token ids to words: an id outside the list (negative, or past the end) reads as `<unk>`, in
  /// the vocabulary and in a decoded caption's words.
  func testWordOfAnOutOfRangeIdIsUnk() {
    let vocabulary = Vocabulary(specialsAnd: ["a", "dog"])
    XCTAssertEqual([0, 2, 3, 4, 5].map(vocabulary.word), ["<pad>", "<end>", "<unk>", "a", "dog"])
    XCTAssertEqual([-1, 6, Int.max, Int.min].map(vocabulary.word), ["<unk>", "<unk>", "<unk>", "<unk>"])
    let caption = DecodedCaption(tokens: [4, 9, 5, -3], logprob: -1, endedWithEnd: true)
    XCTAssertEqual(caption.words(vocabulary), ["a", "<unk>", "dog", "<unk>"])
  }

  func testEncodingTruncatesSkipsEmptyAndCounts() throws {
    let vocabulary = Vocabulary(specialsAnd: ["a", "dog", "runs"])
    let tokenized: [[[String]]] = [
      [["a", "dog", "runs"], [], ["a", "dog", "runs", "fast", "home"]],
      [[]],
      [["dog"]],
    ]
    let (captions, summary) = try CaptionEncoding.encode(
      tokenized: tokenized, vocabulary: vocabulary, maxLength: 4)
    // max-length 4 keeps at most 3 words (+ <end>).
    XCTAssertEqual(captions[0].map(\.tokens), [[4, 5, 6], [4, 5, 6]])
    XCTAssertEqual(captions[1], [])
    XCTAssertEqual(captions[2].map(\.tokens), [[5]])
    XCTAssertEqual(summary.images, 3)
    XCTAssertEqual(summary.captions, 5)
    XCTAssertEqual(summary.encoded, 3)
    XCTAssertEqual(summary.empty, 2)
    XCTAssertEqual(summary.truncated, 1)
    XCTAssertEqual(summary.imagesWithoutCaptions, 1)
    XCTAssertEqual(summary.words, 7)
    XCTAssertEqual(summary.unknownWords, 0)
    let withUnknown = try CaptionEncoding.encode(
      tokenized: [[["a", "cat"]]], vocabulary: vocabulary, maxLength: 20)
    XCTAssertEqual(withUnknown.captions[0][0].tokens, [4, Vocabulary.unk])
    XCTAssertEqual(withUnknown.summary.unknownWords, 1)
    XCTAssertThrowsError(
      try CaptionEncoding.encode(tokenized: tokenized, vocabulary: vocabulary, maxLength: 1))
  }

  func testPreparedCaptionsFromAKarpathyFile() throws {
    let dataset = try Dataset.load(data: data + "/dataset_flickr8k.json")
    let prepared = try PreparedCaptions.prepare(dataset, minCount: 2, maxLength: 5)
    // Train words seen twice or more: a 4, the 3, beach 2, dog 2, on 2 (val and test do not count).
    XCTAssertEqual(prepared.vocabulary.words, Vocabulary.specials + ["a", "the", "beach", "dog", "on"])
    XCTAssertEqual(prepared.train.map(\.id), [0, 1])
    XCTAssertEqual(prepared.val.map(\.id), [2])
    XCTAssertEqual(prepared.trainSummary.captions, 4)
    XCTAssertEqual(prepared.trainSummary.truncated, 4)  // all have more than 4 words
    XCTAssertEqual(prepared.trainCaptions[0][0].tokens, [4, 3, 7, 3])  // a <unk> dog <unk>
    XCTAssertEqual(prepared.valCaptions[0][0].tokens, [4, 3, 3, 4])  // a man in a
    // A given vocabulary (from --init) is kept.
    let given = Vocabulary(specialsAnd: ["dog"])
    let again = try PreparedCaptions.prepare(dataset, minCount: 2, maxLength: 20, vocabulary: given)
    XCTAssertEqual(again.vocabulary, given)
    XCTAssertEqual(again.trainCaptions[0][0].tokens, [3, 3, 4, 3, 3, 3, 3])
  }

  func testTokenizeUsesTheSharedTokenizerInOrder() throws {
    let images = (0..<600).map {
      DatasetImage(id: $0, path: "", split: .train, captions: ["Image \($0) here.", "second \($0)"])
    }
    let tokenized = try CaptionEncoding.tokenize(images)
    XCTAssertEqual(tokenized.count, 600)
    for (i, image) in images.enumerated() {
      XCTAssertEqual(tokenized[i], image.captions.map { PTBTokenizer.tokenize($0) })
    }
  }
}
