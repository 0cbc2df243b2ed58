import Foundation
import XCTest

@testable import CaptionKit

final class SafetensorsTests: XCTestCase {
  // MARK: - Helpers

  /// The tensors of scripts/make_safetensors_fixture.py, computed the same way.
  private func fixtureTensors() -> [(name: String, tensor: Tensor)] {
    let ramp = Tensor(shape: [2, 3, 4], values: (0..<24).map { Float($0) * 0.25 - 3 })
    let bits: [UInt32] = [0x8000_0000, 0x0000_0001, 0x7F7F_FFFF, 0x3DCC_CCCD, 0x7F80_0000, 0x7FC1_2345]
    let special = Tensor(shape: [6], values: bits.map { Float(bitPattern: $0) })
    return [
      ("b.ramp", ramp), ("a.special", special), ("c.scalar", Tensor(shape: [], values: [1.5])),
      ("d.empty", Tensor(zeros: [0, 3])),
    ]
  }

  private let fixtureMetadata = ["format": "caption-test", "note": "written by \"python\"\nsafetensors"]

  private func bitPatterns(_ tensor: Tensor) -> [UInt32] { tensor.array.map(\.bitPattern) }

  /// A file from a header text (padded to 8) and data bytes, for malformed cases.
  private func writeRaw(header: String, data: [UInt8] = [], lengthOverride: UInt64? = nil) -> String {
    var headerBytes = Array(header.utf8)
    while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
    var length = lengthOverride ?? UInt64(headerBytes.count)
    var bytes: [UInt8] = []
    for _ in 0..<8 {
      bytes.append(UInt8(truncatingIfNeeded: length))
      length >>= 8
    }
    bytes += headerBytes + data
    let path = temporaryFolder() + "/raw.safetensors"
    try! AtomicFile.write(bytes, to: path)
    return path
  }

  /// Asserts that reading `path` fails with `.badModel` and a reason containing each of `fragments`.
  private func assertRejected(
    _ path: String, _ fragments: [String], model: Bool = false, file: StaticString = #filePath,
    line: UInt = #line
  ) {
    do {
      if model { _ = try ModelFile.load(path: path) } else { _ = try Safetensors.read(path: path) }
      XCTFail("accepted a malformed file; expected \(fragments)", file: file, line: line)
    } catch let error as CaptionError {
      XCTAssertEqual(error.kind, .badModel, "\(error)", file: file, line: line)
      XCTAssertEqual(error.path, path, file: file, line: line)
      for fragment in fragments {
        XCTAssertTrue(
          error.reason.contains(fragment), "\"\(error.reason)\" lacks \"\(fragment)\"", file: file, line: line
        )
      }
    } catch {
      XCTFail("unexpected error \(error)", file: file, line: line)
    }
  }

  /// A tiny model: 8×8 images, layers [4, M, 8], the given cell and pool, random tensors.
  private func tinyModel(cell: CellType = .lstm, pool: PoolMode = .avg, layers: Int = 2) -> ModelFile {
    let config = ModelConfig(
      imageSize: 8, layers: [.conv(4), .maxPool, .conv(8)], dv: 6, embed: 5, hidden: 7, cell: cell,
      rnnLayers: layers, vocabSize: 11, pool: pool)
    var tensors: [String: Tensor] = [:]
    for (index, (name, shape)) in config.expectedTensorShapes().enumerated() {
      tensors[name] = randomTensor(shape, seed: UInt64(index + 1))
    }
    let vocabulary = Vocabulary(specialsAnd: ["a", "red", "blue", "circle", "square", "on", "left"])
    return ModelFile(config: config, vocabulary: vocabulary, provenance: "{\"epochs\": 3}", tensors: tensors)
  }

  // MARK: - Round trips and interoperability

  func testRoundTripIsBitExact() throws {
    let path = temporaryFolder() + "/round.safetensors"
    let tensors = fixtureTensors() + [("e.random", randomTensor([5, 7], scale: 3, seed: 11))]
    try Safetensors.write(path: path, tensors: tensors, metadata: fixtureMetadata)
    let file = try Safetensors.read(path: path)
    XCTAssertEqual(file.metadata, fixtureMetadata)
    XCTAssertEqual(Set(file.tensors.keys), Set(tensors.map(\.name)))
    for (name, tensor) in tensors {
      XCTAssertEqual(file.tensors[name]?.shape, tensor.shape, name)
      XCTAssertEqual(file.tensors[name].map(bitPatterns), bitPatterns(tensor), name)
      // Each read tensor starts on a cache line, as an owned one does (the kernels' loads rely on
      // it for speed), though all share one storage.
      XCTAssertEqual(file.tensors[name].map { Int(bitPattern: $0.pointer) % 64 }, 0, name)
    }
    // Writing one read tensor leaves the others as they were.
    file.tensors["b.ramp"]!.fill(7)
    XCTAssertEqual(file.tensors["e.random"].map(bitPatterns), bitPatterns(tensors[4].tensor))
    XCTAssertEqual(file.tensors["a.special"].map(bitPatterns), bitPatterns(tensors[1].tensor))
  }

  func testRoundTripWithEmptyMetadataAndNoTensors() throws {
    let path = temporaryFolder() + "/empty.safetensors"
    try Safetensors.write(path: path, tensors: [("only", Tensor(zeros: [0]))], metadata: [:])
    let file = try Safetensors.read(path: path)
    XCTAssertEqual(file.metadata, [:])
    XCTAssertEqual(file.tensors["only"]?.shape, [0])
    try Safetensors.write(path: path, tensors: [], metadata: [:])
    XCTAssertTrue(try Safetensors.read(path: path).tensors.isEmpty)
  }

  /// Our header is plain JSON: length a multiple of 8, tensors sorted by name, tiled from offset 0.
  func testHeaderIsPlainPaddedJSON() throws {
    let path = temporaryFolder() + "/header.safetensors"
    try Safetensors.write(path: path, tensors: fixtureTensors(), metadata: fixtureMetadata)
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    let length = (0..<8).reduce(0) { $0 | Int(bytes[$1]) << (8 * $1) }
    XCTAssertEqual(length % 8, 0)
    let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + length)])) as! [String: Any]
    XCTAssertEqual(header["__metadata__"] as? [String: String], fixtureMetadata)
    let special = header["a.special"] as! [String: Any]
    XCTAssertEqual(special["dtype"] as? String, "F32")
    XCTAssertEqual(special["shape"] as? [Int], [6])
    XCTAssertEqual(special["data_offsets"] as? [Int], [0, 24])
    XCTAssertEqual((header["b.ramp"] as! [String: Any])["data_offsets"] as? [Int], [24, 120])
    XCTAssertEqual(bytes.count, 8 + length + 124)
  }

  /// A file written by the Python `safetensors` library (scripts/make_safetensors_fixture.py).
  func testReadsFileWrittenByPythonLibrary() throws {
    let file = try Safetensors.read(path: fixturePath("safetensors/python.safetensors"))
    XCTAssertEqual(file.metadata, fixtureMetadata)
    XCTAssertEqual(file.tensors.count, 4)
    for (name, tensor) in fixtureTensors() {
      XCTAssertEqual(file.tensors[name]?.shape, tensor.shape, name)
      XCTAssertEqual(file.tensors[name].map(bitPatterns), bitPatterns(tensor), name)
    }
  }

  /// Our writer produces exactly the bytes of the Python library for the same tensors, and exactly
  /// the committed `ours.safetensors`, which the script's `--check-ours` loads in Python.
  func testWriterReproducesCommittedFile() throws {
    let path = temporaryFolder() + "/ours.safetensors"
    try Safetensors.write(path: path, tensors: fixtureTensors(), metadata: fixtureMetadata)
    let ours = try Data(contentsOf: URL(fileURLWithPath: path))
    // To regenerate the committed file: CAPTION_EXPORT_OURS=<that path> swift test --filter ...
    if let export = ProcessInfo.processInfo.environment["CAPTION_EXPORT_OURS"] {
      try AtomicFile.write(ours, to: export)
    }
    XCTAssertEqual(
      ours, try Data(contentsOf: URL(fileURLWithPath: fixturePath("safetensors/ours.safetensors"))))
    XCTAssertEqual(
      ours, try Data(contentsOf: URL(fileURLWithPath: fixturePath("safetensors/python.safetensors"))))
  }

  func testJSONStringEscaping() throws {
    let tricky = "quote \" backslash \\ tab \t bell \u{07} é 日本 🙂"
    let path = temporaryFolder() + "/escape.safetensors"
    try Safetensors.write(path: path, tensors: [(tricky, Tensor(zeros: [1]))], metadata: [tricky: tricky])
    let file = try Safetensors.read(path: path)
    XCTAssertEqual(file.metadata, [tricky: tricky])
    XCTAssertNotNil(file.tensors[tricky])
  }

  // MARK: - Malformed safetensors

  func testTruncatedFilesAreRejected() throws {
    let path = temporaryFolder() + "/whole.safetensors"
    try Safetensors.write(path: path, tensors: fixtureTensors(), metadata: fixtureMetadata)
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    // Inside the length, inside the header, at the data's start, inside a tensor, one byte short.
    let cuts: [(Int, String)] = [
      (0, "shorter than the 8-byte"), (5, "shorter than the 8-byte"), (8, "runs past the end"),
      (100, "runs past the end"), (8 + 344, "\"a.special\": data_offsets [0, 24] run past the end"),
      (8 + 344 + 30, "\"b.ramp\""), (bytes.count - 1, "\"c.scalar\""),
    ]
    XCTAssertEqual(bytes.count, 8 + 344 + 124)  // the header is 344 bytes: the cuts fall where stated
    for (cut, fragment) in cuts {
      let truncated = temporaryFolder() + "/cut\(cut).safetensors"
      try AtomicFile.write(Array(bytes[0..<cut]), to: truncated)
      assertRejected(truncated, [fragment])
    }
  }

  func testAbsurdHeaderLengthIsRejected() {
    assertRejected(writeRaw(header: "{}", lengthOverride: 1 << 60), ["header length 1152921504606846976"])
    assertRejected(writeRaw(header: "{}", lengthOverride: 200_000_000), ["limit"])
  }

  func testHeaderGarbageIsRejected() {
    assertRejected(writeRaw(header: "\u{01}\u{02}garbage"), ["not valid JSON"])
    assertRejected(writeRaw(header: "[1, 2, 3]"), ["not a JSON object"])
    assertRejected(writeRaw(header: "{\"a\": "), ["not valid JSON"])
    assertRejected(writeRaw(header: String(repeating: "[", count: 100_000)), ["not valid JSON"])
    assertRejected(writeRaw(header: "{\"x\": 1} {}"), ["not valid JSON"])
    assertRejected(
      writeRaw(header: "{\"x\": \"\u{FF}\"}".replacingOccurrences(of: "ÿ", with: "\\uD800")),
      ["not valid JSON"])
  }

  func testUnsupportedDtypeIsRejected() {
    let header = "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}"
    assertRejected(writeRaw(header: header, data: [0, 0, 0, 0]), ["\"w\"", "F16", "only F32"])
  }

  func testBadShapesAndOffsetsAreRejected() {
    func entry(_ name: String, _ shape: String, _ offsets: String) -> String {
      "\"\(name)\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":\(offsets)}"
    }
    let data = [UInt8](repeating: 0, count: 16)
    let cases: [(String, [String])] = [
      ("{\(entry("w", "[2]", "[0,800]"))}", ["\"w\"", "run past the end"]),
      ("{\(entry("w", "[2]", "[0,4]"))}", ["\"w\"", "needs 8"]),
      ("{\(entry("w", "[-1]", "[0,16]"))}", ["\"w\"", "non-negative"]),
      ("{\(entry("w", "[1.5]", "[0,16]"))}", ["\"w\"", "non-negative"]),
      ("{\(entry("w", "\"4\"", "[0,16]"))}", ["\"w\"", "not a list"]),
      ("{\(entry("w", "[4611686018427387904,4]", "[0,16]"))}", ["\"w\"", "absurdly large"]),
      ("{\(entry("w", "[2]", "[8,0]"))}", ["\"w\"", "data_offsets"]),
      ("{\(entry("w", "[2]", "[0]"))}", ["\"w\"", "data_offsets"]),
      ("{\(entry("a", "[2]", "[0,8]")),\(entry("b", "[3]", "[4,16]"))}", ["\"b\"", "overlap tensor \"a\""]),
      ("{\(entry("a", "[2]", "[0,8]")),\(entry("b", "[1]", "[12,16]"))}", ["\"b\"", "hole of 4 bytes"]),
      ("{\(entry("a", "[2]", "[0,8]"))}", ["8 bytes of data after the last tensor"]),
      ("{\(entry("a", "[2]", "[0,8]")),\(entry("a", "[2]", "[8,16]"))}", ["\"a\" appears twice"]),
      ("{\"w\":{\"dtype\":\"F32\",\"shape\":[4]}}", ["\"w\"", "needs dtype, shape and data_offsets"]),
      ("{\"w\":[1,2]}", ["\"w\"", "not a JSON object"]),
    ]
    for (header, fragments) in cases { assertRejected(writeRaw(header: header, data: data), fragments) }
  }

  func testBadMetadataIsRejected() {
    assertRejected(writeRaw(header: "{\"__metadata__\":{\"format\":1}}"), ["\"format\"", "not a string"])
    assertRejected(
      writeRaw(header: "{\"__metadata__\":[\"format\"]}"), ["__metadata__", "not a JSON object"])
    assertRejected(
      writeRaw(header: "{\"__metadata__\":{\"format\":\"a\",\"format\":\"b\"}}"),
      ["\"format\" appears twice", "at byte 30 of the header"])
  }

  func testMissingFileAndFolderAreClearErrors() {
    let folder = temporaryFolder()
    XCTAssertThrowsError(try Safetensors.read(path: folder + "/absent.safetensors")) { error in
      XCTAssertEqual((error as? CaptionError)?.kind, .unreadable)
    }
    XCTAssertThrowsError(try Safetensors.read(path: folder)) { error in
      XCTAssertEqual((error as? CaptionError)?.kind, .notAFile)
    }
  }

  // MARK: - Model files

  func testExpectedShapesFollowSpecTable() {
    let model = tinyModel(cell: .peephole, pool: .flatten, layers: 2)
    let shapes = Dictionary(
      uniqueKeysWithValues: model.config.expectedTensorShapes().map { ($0.name, $0.shape) })
    // Encoder: conv0 3→4, conv1 4→8 at 4×4 after the pool; flatten gives 8·4·4 = 128 features.
    XCTAssertEqual(shapes["encoder.conv0.weight"], [4, 3, 3, 3])
    XCTAssertEqual(shapes["encoder.conv1.weight"], [8, 4, 3, 3])
    XCTAssertEqual(shapes["encoder.conv1.bias"], [8])
    XCTAssertEqual(shapes["encoder.fc.weight"], [6, 128])
    XCTAssertEqual(shapes["decoder.embed.weight"], [11, 5])
    XCTAssertEqual(shapes["decoder.rnn.0.weight_ih"], [28, 5])
    XCTAssertEqual(shapes["decoder.rnn.1.weight_ih"], [28, 7])
    XCTAssertEqual(shapes["decoder.rnn.1.weight_iv"], [28, 6])
    XCTAssertEqual(shapes["decoder.rnn.1.weight_peep"], [3, 7])
    XCTAssertEqual(shapes["decoder.out.weight"], [11, 7])
    XCTAssertEqual(shapes.count, 4 + 2 + 1 + 2 * 6 + 2)
    // avg pool: C_last features; GRU G = 3, coupled G = 3, RNN G = 1; no peephole weights.
    XCTAssertEqual(
      tinyModel(cell: .gru).config.expectedTensorShapes().first { $0.name == "encoder.fc.weight" }?.shape,
      [6, 8])
    for (cell, rows) in [(CellType.gru, 21), (.coupled, 21), (.rnn, 7), (.lstm, 28)] {
      let names = tinyModel(cell: cell, layers: 1).config.expectedTensorShapes()
      XCTAssertEqual(names.first { $0.name == "decoder.rnn.0.weight_hh" }?.shape, [rows, 7], "\(cell)")
      XCTAssertFalse(names.contains { $0.name.hasSuffix("weight_peep") }, "\(cell)")
    }
    // Parameter groups add up to the total.
    let groups = model.config.parameterGroups()
    XCTAssertEqual(
      groups.map(\.group),
      ["encoder convs", "encoder fc", "embedding", "rnn layer 0", "rnn layer 1", "output"])
    XCTAssertEqual(groups.reduce(0) { $0 + $1.count }, model.parameterCount)
    XCTAssertEqual(groups[0].count, 4 * 27 + 4 + 8 * 36 + 8)
  }

  func testModelFileRoundTrip() throws {
    for cell in CellType.allCases {
      let model = tinyModel(cell: cell, pool: cell == .gru ? .flatten : .avg)
      let path = temporaryFolder() + "/model.safetensors"
      try model.save(path: path)
      // For a manual check that PyTorch loads our models (strict=True): set CAPTION_EXPORT_MODELS to a
      // folder and run scripts/torch_reference.py on the files it receives.
      if let folder = ProcessInfo.processInfo.environment["CAPTION_EXPORT_MODELS"] {
        try model.save(path: folder + "/\(cell.rawValue).safetensors")
      }
      let loaded = try ModelFile.load(path: path)
      XCTAssertEqual(loaded.config, model.config)
      XCTAssertEqual(loaded.vocabulary, model.vocabulary)
      XCTAssertEqual(loaded.mean, Preprocess.imagenetMean)
      XCTAssertEqual(loaded.std, Preprocess.imagenetStd)
      XCTAssertEqual(loaded.provenance, "{\"epochs\": 3}")
      XCTAssertEqual(Set(loaded.tensors.keys), Set(model.tensors.keys))
      for (name, tensor) in model.tensors {
        XCTAssertEqual(loaded.tensors[name].map(bitPatterns), bitPatterns(tensor), name)
      }
      let metadata = try Safetensors.read(path: path).metadata
      XCTAssertEqual(metadata["format"], "caption-model")
      XCTAssertEqual(metadata["version"], "1")
      XCTAssertEqual(
        metadata["vocab"],
        "[\"<pad>\",\"<start>\",\"<end>\",\"<unk>\",\"a\",\"red\",\"blue\",\"circle\",\"square\",\"on\",\"left\"]"
      )
      XCTAssertEqual(
        metadata["preprocess"], "{\"image_size\":8,\"mean\":[0.485,0.456,0.406],\"std\":[0.229,0.224,0.225]}")
    }
  }

  /// Writes the tiny model's tensors and metadata with one change, for the malformed-model cases.
  private func writeModel(
    _ model: ModelFile, tensors change: (inout [String: Tensor]) -> Void = { _ in },
    metadata changeMetadata: (inout [String: String]) -> Void = { _ in }
  ) throws -> String {
    var tensors = model.tensors
    change(&tensors)
    var metadata = try model.metadata()
    changeMetadata(&metadata)
    let path = temporaryFolder() + "/model.safetensors"
    try Safetensors.write(path: path, tensors: tensors.map { ($0.key, $0.value) }, metadata: metadata)
    return path
  }

  func testMalformedModelsAreRejected() throws {
    let model = tinyModel(cell: .peephole)
    let cases: [(String, (inout [String: Tensor]) -> Void, (inout [String: String]) -> Void, [String])] = [
      (
        "missing", { $0["decoder.rnn.1.weight_peep"] = nil }, { _ in },
        ["\"decoder.rnn.1.weight_peep\"", "missing"]
      ),
      (
        "extra", { $0["decoder.rnn.2.weight_ih"] = Tensor(zeros: [1]) }, { _ in },
        ["\"decoder.rnn.2.weight_ih\"", "not part"]
      ),
      (
        "shape", { $0["encoder.fc.weight"] = Tensor(zeros: [8, 6]) }, { _ in },
        ["\"encoder.fc.weight\"", "[8, 6]", "expected [6, 8]"]
      ),
      ("no format", { _ in }, { $0["format"] = nil }, ["\"format\" is missing"]),
      ("format", { _ in }, { $0["format"] = "pytorch" }, ["format", "pytorch"]),
      ("version", { _ in }, { $0["version"] = "2" }, ["version \"2\""]),
      ("config JSON", { _ in }, { $0["config"] = "{not json" }, ["config"]),
      (
        "config key", { _ in },
        { $0["config"] = $0["config"]!.replacingOccurrences(of: "\"hidden\"", with: "\"hid\"") },
        ["config", "hidden"]
      ),
      (
        "config value", { _ in },
        {
          $0["config"] = $0["config"]!.replacingOccurrences(of: "\"rnn_layers\":2", with: "\"rnn_layers\":0")
        }, ["config", "rnn_layers"]
      ),
      (
        "config cell", { _ in },
        { $0["config"] = $0["config"]!.replacingOccurrences(of: "peephole", with: "transformer") },
        ["config", "cell"]
      ),
      (
        "vocab count", { _ in }, { $0["vocab"] = "[\"<pad>\",\"<start>\",\"<end>\",\"<unk>\",\"a\"]" },
        ["vocab holds 5 words", "vocab_size is 11"]
      ),
      ("vocab type", { _ in }, { $0["vocab"] = "[1,2,3]" }, ["vocab", "array of strings"]),
      (
        "vocab specials", { _ in },
        { $0["vocab"] = $0["vocab"]!.replacingOccurrences(of: "<start>", with: "<begin>") },
        ["vocab", "<start>"]
      ),
      (
        "preprocess size", { _ in },
        { $0["preprocess"] = "{\"image_size\":64,\"mean\":[0,0,0],\"std\":[1,1,1]}" },
        ["preprocess image_size 64", "config image_size 8"]
      ),
      (
        "preprocess std", { _ in },
        { $0["preprocess"] = "{\"image_size\":8,\"mean\":[0,0,0],\"std\":[1,0,1]}" }, ["std"]
      ),
      (
        "preprocess mean", { _ in },
        { $0["preprocess"] = "{\"image_size\":8,\"mean\":[0,0],\"std\":[1,1,1]}" }, ["mean"]
      ),
      (
        "preprocess key", { _ in }, { $0["preprocess"] = "{\"image_size\":8,\"std\":[1,1,1]}" },
        ["preprocess", "mean"]
      ),
      ("provenance", { _ in }, { $0["provenance"] = "{epochs" }, ["provenance"]),
    ]
    for (label, changeTensors, changeMetadata, fragments) in cases {
      let path = try writeModel(model, tensors: changeTensors, metadata: changeMetadata)
      assertRejected(path, fragments, model: true)
      _ = label
    }
    // A config whose sizes would overflow a shape product.
    let huge = try writeModel(
      model,
      metadata: {
        $0["config"] = $0["config"]!.replacingOccurrences(
          of: "\"layers\":[4,", with: "\"layers\":[4611686018427387904,")
      })
    assertRejected(huge, ["config", "4611686018427387904"], model: true)
  }

  /// The reader names the tensors holding a NaN or an infinity wherever it lies: in a later piece
  /// of a tensor read in several, on a piece's last value, in a small tensor; not in the tensors
  /// left out, nor in those whose values are finite at any magnitude.
  func testNonFiniteTensorsAreNamedAsRead() throws {
    let piece = Safetensors.readPieceFloats
    func tensor(_ count: Int, _ bad: [(Int, Float)]) -> Tensor {
      let tensor = randomTensor([count], scale: 3, seed: UInt64(count))
      for (index, value) in bad { tensor[index] = value }
      return tensor
    }
    let tensors: [(name: String, tensor: Tensor)] = [
      ("a.finite", tensor(2 * piece + 5, [(0, .greatestFiniteMagnitude), (piece, -.leastNonzeroMagnitude)])),
      ("b.nan", tensor(2 * piece + 5, [(piece + 3, .nan)])),
      ("c.inf", tensor(10, [(9, -.infinity)])),
      ("d.edge", tensor(piece, [(piece - 1, .infinity)])),
      ("e.signalling", tensor(piece + 1, [(piece, Float(bitPattern: 0x7F80_0001))])),
    ]
    let path = temporaryFolder() + "/nonfinite.safetensors"
    try Safetensors.write(path: path, tensors: tensors, metadata: [:])
    XCTAssertEqual(try Safetensors.read(path: path).nonFinite, ["b.nan", "c.inf", "d.edge", "e.signalling"])
    let some = try Safetensors.read(path: path) { $0 != "c.inf" && $0 != "d.edge" }
    XCTAssertEqual(some.nonFinite, ["b.nan", "e.signalling"])
    // Bit-exact all the same: the pieces land where they belong.
    for (name, tensor) in tensors where name != "c.inf" && name != "d.edge" {
      XCTAssertEqual(some.tensors[name].map(bitPatterns), bitPatterns(tensor), name)
    }
  }

  /// A model with values that are not finite is refused, naming the first such tensor by name.
  func testModelWithNonFiniteValuesIsRejected() throws {
    let model = tinyModel()
    let path = try writeModel(
      model,
      tensors: {
        $0["encoder.fc.weight"]![5] = .nan
        $0["decoder.out.bias"]![0] = -.infinity
      })
    assertRejected(path, ["tensor \"decoder.out.bias\"", "not finite"], model: true)
  }

  /// The PyTorch parity fixtures (scripts/make_parity_fixture.py) are model files we load, and their
  /// expected gradients cover exactly the model's tensors with the same shapes.
  func testParityFixturesLoadAsModels() throws {
    let cells: [(String, CellType)] = [
      ("lstm", .lstm), ("gru", .gru), ("rnn", .rnn), ("peephole", .peephole), ("coupled", .coupled),
      ("lstm2_first_flatten", .lstm),
    ]
    for (name, cell) in cells {
      let model = try ModelFile.load(path: fixturePath("parity/\(name).model.safetensors"))
      XCTAssertEqual(model.config.cell, cell)
      XCTAssertEqual(model.config.rnnLayers, name.hasPrefix("lstm2") ? 2 : 1)
      XCTAssertEqual(model.config.imageInput, name.hasPrefix("lstm2") ? .first : .every)
      XCTAssertEqual(model.config.pool, name.hasPrefix("lstm2") ? .flatten : .avg)
      XCTAssertEqual(model.vocabulary.count, 11)
      let expected = try Safetensors.read(path: fixturePath("parity/\(name).expected.safetensors"))
      for (tensorName, tensor) in model.tensors {
        XCTAssertEqual(expected.tensors["grad." + tensorName]?.shape, tensor.shape, tensorName)
      }
      XCTAssertEqual(expected.tensors.keys.filter { $0.hasPrefix("grad.") }.count, model.tensors.count + 1)
      XCTAssertEqual(expected.tensors["batch.tokens"]?.array, [1, 4, 5, 7, 9, 2, 1, 6, 3, 8, 2, 0])
      XCTAssertEqual(expected.tensors["expected.logits"]?.shape, [2, 5, 11])
      XCTAssertEqual(expected.tensors["grad.images"]?.shape, [2, 3, 8, 8])
    }
  }

  /// Random corruptions of a valid model file (bytes overwritten in the length, header or data,
  /// random truncations) either load or throw a `CaptionError`: never a crash, trap or hang.
  func testCorruptedModelFilesNeverCrash() throws {
    let path = temporaryFolder() + "/model.safetensors"
    try tinyModel(cell: .gru).save(path: path)
    let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    let headerEnd = 8 + (0..<8).reduce(0) { $0 | Int(original[$1]) << (8 * $1) }
    var generator = SeededGenerator(seed: 2024)
    var rejected = 0
    let trials = 200
    let corrupted = temporaryFolder() + "/corrupt.safetensors"
    for trial in 0..<trials {
      var bytes = original
      if trial % 4 == 3 {
        bytes.removeLast(Int(generator.next() % UInt64(bytes.count)) + 1)
      } else {
        // Mostly the header, where the structure is; a few bytes each time.
        for _ in 0..<(1 + Int(generator.next() % 3)) {
          let position =
            trial % 4 == 0 ? Int(generator.next() % 8) : Int(generator.next() % UInt64(headerEnd))
          bytes[position] = UInt8(truncatingIfNeeded: generator.next())
        }
      }
      try Data(bytes).write(to: URL(fileURLWithPath: corrupted))  // no fsync: a scratch file
      do {
        _ = try ModelFile.load(path: corrupted)
      } catch let error as CaptionError {
        XCTAssertEqual(error.kind, .badModel, "\(error)")
        rejected += 1
      }
    }
    XCTAssertGreaterThan(rejected, trials / 2)
  }

  func testDeeplyNestedMetadataJSONIsAnError() throws {
    let model = tinyModel()
    let nested = String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)
    for key in ["config", "vocab", "preprocess", "provenance"] {
      assertRejected(try writeModel(model, metadata: { $0[key] = nested }), [key], model: true)
    }
  }

  /// `caption info`'s text: parameter counts per group worked out by hand for the 2-layer fixture.
  func testSummaryCountsParametersPerGroup() throws {
    let path = fixturePath("parity/lstm2_first_flatten.model.safetensors")
    let summary = try ModelFile.load(path: path).summary(path: path)
    let lines = summary.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
    // conv0 4·3·9+4 = 112, conv1 8·4·9+8 = 296; fc 6·(8·4·4)+6; embed 11·5;
    // layer 0: 28·(5+7+6)+2·28; layer 1: 28·(7+7+6)+2·28; out 11·7+11.
    let expected = [
      "encoder convs  408", "encoder fc     774", "embedding      55", "rnn layer 0    560",
      "rnn layer 1    616", "output         88", "total          2,501",
    ]
    for line in expected { XCTAssertTrue(lines.contains(line), "missing \"\(line)\" in\n\(summary)") }
    XCTAssertTrue(lines.contains("cell        lstm"))
    XCTAssertTrue(lines.contains("image_input first"))
    XCTAssertTrue(lines.contains("vocabulary: 11 words (first: a red blue circle square left of)"))
    XCTAssertTrue(
      lines.contains("preprocessing: size 8, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]"))
    XCTAssertTrue(lines.contains("\"seed\" : 105"), summary)
    XCTAssertEqual(ModelFile.grouped(1_234_567), "1,234,567")
    XCTAssertEqual(ModelFile.grouped(999), "999")
  }

  func testSaveRefusesTensorsThatDoNotMatchTheConfig() {
    var model = tinyModel()
    model.tensors["decoder.out.bias"] = Tensor(zeros: [12])
    XCTAssertThrowsError(try model.save(path: temporaryFolder() + "/bad.safetensors")) { error in
      XCTAssertTrue("\(error)".contains("decoder.out.bias"), "\(error)")
    }
  }
}
