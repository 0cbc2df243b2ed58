import FoundationEssentials
import Glibc

// The safetensors format (Hugging Face), as SPEC §3 uses it:
//
//   [8 bytes]  N, the header length, a little-endian UInt64
//   [N bytes]  a JSON object: {"__metadata__": {string: string}, name: {"dtype": "F32",
//              "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}, padded with spaces
//   [rest]     the tensors' raw bytes; offsets are relative to the start of this section, and the
//              tensors tile it exactly (no overlap, no hole, nothing after the last one)
//
// Only float32 is supported, and the host is assumed little-endian (as the file is): tensor bytes
// are copied as they are. A big-endian host would need a byte swap; the build refuses one.
#if _endian(big)
  #error("Safetensors.swift copies little-endian float32 bytes as they are: a big-endian host needs a swap")
#endif

/// What a safetensors file holds: its `__metadata__` strings and its tensors by name.
public struct SafetensorsFile {
  public let metadata: [String: String]
  /// Each tensor with the shape its header gives.
  public let tensors: [String: Tensor]
  /// The names of the tensors a selective read left out (their bytes were not read).
  public let skipped: [String]
  /// The names of the tensors read that hold a NaN or an infinity, sorted: noted as each piece of
  /// the file is copied, while its bytes are still in the cache (the same test afterwards read a
  /// model's 6.5 MB back from memory: 3.8% of a one-image `describe`'s time in a profile, 1.8% so).
  public let nonFinite: [String]

  public init(metadata: [String: String], tensors: [String: Tensor], skipped: [String], nonFinite: [String]) {
    self.metadata = metadata
    self.tensors = tensors
    self.skipped = skipped
    self.nonFinite = nonFinite
  }
}

public enum Safetensors {
  /// The largest header accepted, as the Python library limits it (100 MB).
  public static let maximumHeaderLength = 100_000_000

  /// Floats read in one piece (256 KB: half a Zen 3 core's L2, a quarter of a Zen 5's).
  static let readPieceFloats = 65_536

  // MARK: - Reading

  /// Reads and validates a whole file. Every defect is a `.badModel` error naming the file and, where
  /// one is at fault, the tensor or key; an unreadable file is `.unreadable`.
  public static func read(path: String) throws -> SafetensorsFile {
    try read(path: path, selecting: { _ in true })
  }

  /// As `read(path:)`, but reads the bytes of the tensors `selecting` accepts only (a torchvision
  /// VGG's `features.*` without its 470 MB classifier). The header is checked whole; a tensor left
  /// out may have any dtype the format defines (a batch-norm counter is I64).
  public static func read(path: String, selecting: (String) -> Bool) throws -> SafetensorsFile {
    let file = try OpenFile(path: path)
    defer { file.close() }
    func bad(_ reason: String) -> CaptionError { CaptionError(.badModel, path: path, reason) }

    // The header length.
    let size = file.size
    guard size >= 8 else {
      throw bad("the file is \(size) bytes, shorter than the 8-byte header length of a safetensors file")
    }
    var lengthBytes = [UInt8](repeating: 0, count: 8)
    try file.read(into: &lengthBytes, at: 0, what: "the header length")
    let headerLength = lengthBytes.enumerated().reduce(UInt64(0)) {
      $0 | UInt64($1.element) << (8 * $1.offset)
    }
    guard headerLength <= UInt64(maximumHeaderLength) else {
      throw bad(
        "header length \(headerLength) is over the \(maximumHeaderLength)-byte limit (not a safetensors file?)"
      )
    }
    guard headerLength <= UInt64(size - 8) else {
      throw bad(
        "header length \(headerLength) runs past the end of the file (\(size - 8) bytes after the length)")
    }
    guard headerLength >= 2 else { throw bad("header length \(headerLength) is too short for a JSON object") }

    // The header JSON.
    var headerBytes = [UInt8](repeating: 0, count: Int(headerLength))
    try file.read(into: &headerBytes, at: 8, what: "the header")
    let header: JSONValue
    do {
      header = try headerBytes.withUnsafeBytes { try JSONValue.parse($0) }
    } catch let error as JSONSyntaxError {
      throw bad("the header is not valid JSON: \(error.reason) at byte \(error.offset) of the header")
    }
    guard case .object(let entries) = header else { throw bad("the header is not a JSON object") }

    // Each entry: the metadata, or a tensor's dtype, shape and byte range.
    let dataStart = 8 + Int(headerLength)
    let dataSize = size - dataStart
    var metadata: [String: String] = [:]
    var layouts: [TensorLayout] = []
    for (name, value) in entries.members {  // names are unique: the reader refuses a repeated key
      if name == "__metadata__" {
        metadata = try parseMetadata(value, bad: bad)
      } else {
        layouts.append(
          try parseLayout(name: name, value, dataSize: dataSize, selected: selecting(name), bad: bad))
      }
    }

    // The tensors must tile the data section exactly: sorted by offset, each begins where the last ended.
    layouts.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
    var expected = 0
    var previous: String? = nil
    for layout in layouts {
      if layout.begin < expected {
        throw bad(
          "tensor \"\(layout.name)\": data_offsets [\(layout.begin), \(layout.end)] overlap tensor \"\(previous!)\""
        )
      }
      if layout.begin > expected {
        throw bad(
          "tensor \"\(layout.name)\": data_offsets begin at \(layout.begin), leaving a hole of \(layout.begin - expected) bytes before it"
        )
      }
      expected = layout.end
      previous = layout.name
    }
    guard expected == dataSize else {
      throw bad("\(dataSize - expected) bytes of data after the last tensor are not described by the header")
    }

    // One copy of each tensor's bytes, from the file into one storage that every tensor is a view
    // of, each starting on a 64-byte boundary: one large allocation, whose first writes cost a few
    // 2 MB page faults instead of one fault per 4 KB of weights (`Tensor.largeBytes`).
    let selected = layouts.filter(\.selected)
    let alignedFloats = Tensor.alignment / MemoryLayout<Float>.stride
    var offsets: [Int] = []  // of each selected tensor in the storage
    var storageCount = 0
    for layout in selected {
      offsets.append(storageCount)
      let count = layout.shape.reduce(1, *)
      storageCount += (count + alignedFloats - 1) / alignedFloats * alignedFloats
    }
    let storage = Tensor(zeros: [storageCount])
    var tensors: [String: Tensor] = [:]
    var nonFinite: [String] = []
    for (layout, offset) in zip(selected, offsets) {
      let tensor = storage.view(offset: offset, shape: layout.shape)
      // In pieces that fit the core's cache, each tested for NaN and infinity as soon as it lands.
      var finite = true
      var done = 0  // floats
      while done < tensor.count {
        let piece = min(readPieceFloats, tensor.count - done)
        try file.read(
          into: UnsafeMutableRawBufferPointer(start: tensor.pointer + done, count: piece * 4),
          at: dataStart + layout.begin + done * 4, what: "tensor \"\(layout.name)\"")
        finite = finite && Tensor.allFinite(tensor.pointer + done, count: piece)
        done += piece
      }
      if !finite { nonFinite.append(layout.name) }
      tensors[layout.name] = tensor
    }
    let skipped = layouts.filter { !$0.selected }.map(\.name)
    return SafetensorsFile(
      metadata: metadata, tensors: tensors, skipped: skipped, nonFinite: nonFinite.sorted())
  }

  private struct TensorLayout {
    var name: String
    var shape: [Int]
    var begin: Int
    var end: Int
    var selected: Bool
  }

  /// Bytes per element of each dtype the format defines (only F32 is ever read).
  private static let elementSizes: [String: Int] = [
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
    "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
  ]

  private static func parseMetadata(
    _ value: JSONValue, bad: (String) -> CaptionError
  ) throws -> [String: String] {
    if case .null = value { return [:] }
    guard case .object(let entries) = value else { throw bad("__metadata__ is not a JSON object") }
    var metadata: [String: String] = [:]
    for (key, entry) in entries.members {
      guard case .string(let text) = entry else {
        throw bad("__metadata__ key \"\(key)\": the value is not a string")
      }
      metadata[key] = text
    }
    return metadata
  }

  private static func parseLayout(
    name: String, _ value: JSONValue, dataSize: Int, selected: Bool, bad: (String) -> CaptionError
  ) throws -> TensorLayout {
    func fail(_ reason: String) -> CaptionError { bad("tensor \"\(name)\": \(reason)") }
    guard case .object(let fields) = value else { throw fail("the entry is not a JSON object") }
    var dtype: JSONValue? = nil
    var shapeValue: JSONValue? = nil
    var offsetsValue: JSONValue? = nil
    for (key, field) in fields.members {
      switch key {
      case "dtype": dtype = field
      case "shape": shapeValue = field
      case "data_offsets": offsetsValue = field
      default: throw fail("unexpected key \"\(key)\"")
      }
    }
    guard let dtype, let shapeValue, let offsetsValue else {
      throw fail("the entry needs dtype, shape and data_offsets")
    }
    guard case .string(let dtypeName) = dtype else { throw fail("dtype is not a string") }
    guard dtypeName == "F32" || (!selected && elementSizes[dtypeName] != nil) else {
      throw fail("dtype \(dtypeName.prefix(40)) is not supported (only F32)")
    }
    let elementSize = elementSizes[dtypeName]!

    guard case .array(let dimensions) = shapeValue else { throw fail("shape is not a list") }
    var shape: [Int] = []
    var count = 1
    for dimension in dimensions {
      guard case .integer(let size) = dimension, size >= 0 else {
        throw fail("shape \(describe(shapeValue)) is not a list of non-negative integers")
      }
      let (product, overflow) = count.multipliedReportingOverflow(by: size)
      guard !overflow, product <= Int.max / 8 else {
        throw fail("shape \(describe(shapeValue)) is absurdly large")
      }
      shape.append(size)
      count = product
    }

    guard case .array(let offsets) = offsetsValue, offsets.count == 2,
      case .integer(let begin) = offsets[0], case .integer(let end) = offsets[1], begin >= 0, end >= begin
    else {
      throw fail("data_offsets \(describe(offsetsValue)) is not a pair [begin, end] with 0 <= begin <= end")
    }
    guard end <= dataSize else {
      throw fail("data_offsets [\(begin), \(end)] run past the end of the data (\(dataSize) bytes)")
    }
    guard end - begin == count * elementSize else {
      throw fail(
        "data_offsets [\(begin), \(end)] hold \(end - begin) bytes, but shape \(shape) of \(dtypeName) needs \(count * elementSize)"
      )
    }
    return TensorLayout(name: name, shape: shape, begin: begin, end: end, selected: selected)
  }

  /// A short rendering of a header value for error messages.
  private static func describe(_ value: JSONValue) -> String {
    switch value {
    case .object: return "{...}"
    case .array(let items):
      return "[" + items.prefix(8).map(describe).joined(separator: ", ") + (items.count > 8 ? ", ...]" : "]")
    case .string(let text): return "\"\(text.prefix(40))\""
    case .integer(let value): return String(value)
    case .number(let value): return String(value)
    case .bool(let value): return String(value)
    case .null: return "null"
    }
  }

  // MARK: - Writing

  /// Writes `tensors` (sorted by name, as the Python library does) and `metadata` atomically.
  /// The header is padded with spaces so the data starts at a multiple of 8 bytes.
  public static func write(
    path: String, tensors: [(name: String, tensor: Tensor)], metadata: [String: String]
  ) throws {
    let sorted = tensors.sorted { $0.name < $1.name }
    for (index, entry) in sorted.enumerated() {
      if entry.name == "__metadata__" || entry.name.isEmpty {
        throw CaptionError(.invalidArgument, path: path, "\"\(entry.name)\" cannot name a tensor")
      }
      if index > 0 && sorted[index - 1].name == entry.name {
        throw CaptionError(.invalidArgument, path: path, "tensor \"\(entry.name)\" is given twice")
      }
    }

    // The header: metadata first, then each tensor at its offset.
    var header = "{"
    var fields: [String] = []
    if !metadata.isEmpty {
      let pairs = metadata.keys.sorted().map { JSONText.quoted($0) + ":" + JSONText.quoted(metadata[$0]!) }
      fields.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
    }
    var offset = 0
    for (name, tensor) in sorted {
      let bytes = tensor.count * 4
      let shape = tensor.shape.map(String.init).joined(separator: ",")
      fields.append(
        JSONText.quoted(name)
          + ":{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + bytes)]}")
      offset += bytes
    }
    header += fields.joined(separator: ",") + "}"
    var headerBytes = Array(header.utf8)
    while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }

    // Length, header, data, in one buffer written atomically.
    let total = 8 + headerBytes.count + offset
    let file = [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
      var length = UInt64(headerBytes.count)
      for i in 0..<8 {
        buffer[i] = UInt8(truncatingIfNeeded: length)
        length >>= 8
      }
      var position = 8
      for byte in headerBytes {
        buffer[position] = byte
        position += 1
      }
      for (_, tensor) in sorted where tensor.count > 0 {
        let bytes = tensor.count * 4
        UnsafeMutableRawPointer(buffer.baseAddress! + position).copyMemory(
          from: tensor.pointer, byteCount: bytes)
        position += bytes
      }
      initialized = position
    }
    try AtomicFile.write(file, to: path)
  }
}

// MARK: - File access

/// A file opened for reading at offsets; every failure a `CaptionError` naming the file.
private struct OpenFile {
  let path: String
  let descriptor: Int32
  let size: Int

  init(path: String) throws {
    self.path = path
    (descriptor, size) = try RegularFile.open(path)
  }

  func close() { _ = Glibc.close(descriptor) }

  func read(into bytes: inout [UInt8], at offset: Int, what: String) throws {
    try bytes.withUnsafeMutableBytes { try read(into: $0, at: offset, what: what) }
  }

  /// Fills `buffer` from `offset`; the file ending first is a truncation.
  func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int, what: String) throws {
    var done = 0
    while done < buffer.count {
      let got = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
      if got < 0 {
        if errno == EINTR { continue }
        throw CaptionError(.unreadable, path: path, "reading \(what): \(String(cString: strerror(errno)))")
      }
      if got == 0 { throw CaptionError(.badModel, path: path, "the file ends inside \(what)") }
      done += got
    }
  }
}
