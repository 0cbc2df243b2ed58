import Foundation

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

  public init(metadata: [String: String], tensors: [String: Tensor]) {
    self.metadata = metadata
    self.tensors = tensors
  }
}

public enum Safetensors {
  /// The largest header accepted, as the Python library limits it (100 MB).
  public static let maximumHeaderLength = 100_000_000

  // MARK: - Reading

  /// Reads and validates a whole file. Every defect is a `.badModel` error naming the file and, where
  /// one is at fault, the tensor or key; an unreadable file is `.unreadable`.
  public static func read(path: String) throws -> SafetensorsFile {
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
    let header: HeaderValue
    do {
      header = try headerBytes.withUnsafeBytes { bytes in
        var parser = HeaderParser(bytes: bytes)
        return try parser.parseDocument()
      }
    } catch let error as HeaderParser.Failure {
      throw bad("the header is not valid JSON: \(error.reason) at byte \(error.offset) of the header")
    }
    guard case .object(let entries) = header else { throw bad("the header is not a JSON object") }

    // Each entry: the metadata, or a tensor's dtype, shape and byte range.
    let dataStart = 8 + Int(headerLength)
    let dataSize = size - dataStart
    var metadata: [String: String] = [:]
    var seen = Set<String>()
    var layouts: [TensorLayout] = []
    for (name, value) in entries {
      guard seen.insert(name).inserted else { throw bad("\"\(name)\" appears twice in the header") }
      if name == "__metadata__" {
        metadata = try parseMetadata(value, bad: bad)
      } else {
        layouts.append(try parseLayout(name: name, value, dataSize: dataSize, bad: bad))
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

    // One copy of each tensor's bytes, from the file into the tensor's storage.
    var tensors: [String: Tensor] = [:]
    for layout in layouts {
      let tensor = Tensor(zeros: layout.shape)
      try file.read(
        into: UnsafeMutableRawBufferPointer(start: tensor.pointer, count: layout.end - layout.begin),
        at: dataStart + layout.begin, what: "tensor \"\(layout.name)\"")
      tensors[layout.name] = tensor
    }
    return SafetensorsFile(metadata: metadata, tensors: tensors)
  }

  private struct TensorLayout {
    var name: String
    var shape: [Int]
    var begin: Int
    var end: Int
  }

  private static func parseMetadata(
    _ value: HeaderValue, bad: (String) -> CaptionError
  ) throws -> [String: String] {
    if case .null = value { return [:] }
    guard case .object(let entries) = value else { throw bad("__metadata__ is not a JSON object") }
    var metadata: [String: String] = [:]
    for (key, entry) in entries {
      guard metadata[key] == nil else { throw bad("__metadata__ key \"\(key)\" appears twice") }
      guard case .string(let text) = entry else {
        throw bad("__metadata__ key \"\(key)\": the value is not a string")
      }
      metadata[key] = text
    }
    return metadata
  }

  private static func parseLayout(
    name: String, _ value: HeaderValue, dataSize: Int, bad: (String) -> CaptionError
  ) throws -> TensorLayout {
    func fail(_ reason: String) -> CaptionError { bad("tensor \"\(name)\": \(reason)") }
    guard case .object(let fields) = value else { throw fail("the entry is not a JSON object") }
    var dtype: HeaderValue? = nil
    var shapeValue: HeaderValue? = nil
    var offsetsValue: HeaderValue? = nil
    for (key, field) in fields {
      switch key {
      case "dtype" where dtype == nil: dtype = field
      case "shape" where shapeValue == nil: shapeValue = field
      case "data_offsets" where offsetsValue == nil: offsetsValue = field
      default: throw fail("unexpected or repeated key \"\(key)\"")
      }
    }
    guard let dtype, let shapeValue, let offsetsValue else {
      throw fail("the entry needs dtype, shape and data_offsets")
    }
    guard case .string(let dtypeName) = dtype else { throw fail("dtype is not a string") }
    guard dtypeName == "F32" else { throw fail("dtype \(dtypeName) is not supported (only F32)") }

    guard case .array(let dimensions) = shapeValue else { throw fail("shape is not a list") }
    var shape: [Int] = []
    var count = 1
    for dimension in dimensions {
      guard case .integer(let size) = dimension, size >= 0 else {
        throw fail("shape \(describe(shapeValue)) is not a list of non-negative integers")
      }
      let (product, overflow) = count.multipliedReportingOverflow(by: size)
      guard !overflow, product <= Int.max / 4 else {
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
    guard end - begin == count * 4 else {
      throw fail(
        "data_offsets [\(begin), \(end)] hold \(end - begin) bytes, but shape \(shape) of F32 needs \(count * 4)"
      )
    }
    return TensorLayout(name: name, shape: shape, begin: begin, end: end)
  }

  /// A short rendering of a header value for error messages.
  private static func describe(_ value: HeaderValue) -> String {
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

// MARK: - The header's JSON

/// A JSON value as the header parser sees it: objects keep their key order and repeated keys
/// (the caller rejects repeats), numbers are integers when they are written as such and fit.
enum HeaderValue {
  case object([(key: String, value: HeaderValue)])
  case array([HeaderValue])
  case string(String)
  case integer(Int)
  case number(Double)
  case bool(Bool)
  case null
}

/// A strict JSON (RFC 8259) parser over bytes, with a nesting limit so no input can exhaust the stack.
struct HeaderParser {
  struct Failure: Error {
    var reason: String
    var offset: Int
  }

  static let maximumDepth = 64
  let bytes: UnsafeRawBufferPointer
  var position = 0
  var depth = 0

  init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

  /// One value, surrounded only by whitespace.
  mutating func parseDocument() throws -> HeaderValue {
    let value = try parseValue()
    skipWhitespace()
    guard position == bytes.count else { throw fail("unexpected text after the JSON value") }
    return value
  }

  private func fail(_ reason: String) -> Failure { Failure(reason: reason, offset: position) }

  private var current: UInt8? { position < bytes.count ? bytes[position] : nil }

  private mutating func skipWhitespace() {
    while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { position += 1 }
  }

  private mutating func expect(_ literal: String) throws {
    for byte in literal.utf8 {
      guard current == byte else { throw fail("expected \"\(literal)\"") }
      position += 1
    }
  }

  private mutating func parseValue() throws -> HeaderValue {
    skipWhitespace()
    guard let byte = current else { throw fail("unexpected end") }
    switch byte {
    case UInt8(ascii: "{"): return try parseObject()
    case UInt8(ascii: "["): return try parseArray()
    case UInt8(ascii: "\""): return .string(try parseString())
    case UInt8(ascii: "t"):
      try expect("true")
      return .bool(true)
    case UInt8(ascii: "f"):
      try expect("false")
      return .bool(false)
    case UInt8(ascii: "n"):
      try expect("null")
      return .null
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
    default: throw fail("unexpected character")
    }
  }

  private mutating func enter() throws {
    depth += 1
    guard depth <= HeaderParser.maximumDepth else {
      throw fail("nested deeper than \(HeaderParser.maximumDepth)")
    }
  }

  private mutating func parseObject() throws -> HeaderValue {
    try enter()
    position += 1  // {
    var entries: [(key: String, value: HeaderValue)] = []
    skipWhitespace()
    if current == UInt8(ascii: "}") {
      position += 1
      depth -= 1
      return .object(entries)
    }
    while true {
      skipWhitespace()
      guard current == UInt8(ascii: "\"") else { throw fail("expected a string key") }
      let key = try parseString()
      skipWhitespace()
      try expect(":")
      entries.append((key, try parseValue()))
      skipWhitespace()
      if current == UInt8(ascii: ",") {
        position += 1
      } else if current == UInt8(ascii: "}") {
        position += 1
        depth -= 1
        return .object(entries)
      } else {
        throw fail("expected \",\" or \"}\"")
      }
    }
  }

  private mutating func parseArray() throws -> HeaderValue {
    try enter()
    position += 1  // [
    var items: [HeaderValue] = []
    skipWhitespace()
    if current == UInt8(ascii: "]") {
      position += 1
      depth -= 1
      return .array(items)
    }
    while true {
      items.append(try parseValue())
      skipWhitespace()
      if current == UInt8(ascii: ",") {
        position += 1
      } else if current == UInt8(ascii: "]") {
        position += 1
        depth -= 1
        return .array(items)
      } else {
        throw fail("expected \",\" or \"]\"")
      }
    }
  }

  private mutating func parseHex4() throws -> UInt32 {
    var value: UInt32 = 0
    for _ in 0..<4 {
      guard let byte = current else { throw fail("unexpected end in a \\u escape") }
      let digit: UInt32
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
      default: throw fail("bad hex digit in a \\u escape")
      }
      value = value << 4 | digit
      position += 1
    }
    return value
  }

  /// A string literal; its bytes must be valid UTF-8 and control characters must be escaped.
  private mutating func parseString() throws -> String {
    position += 1  // "
    var utf8: [UInt8] = []
    while true {
      guard let byte = current else { throw fail("unterminated string") }
      position += 1
      switch byte {
      case UInt8(ascii: "\""):
        guard let text = String(validating: utf8, as: UTF8.self) else {
          throw fail("string is not valid UTF-8")
        }
        return text
      case UInt8(ascii: "\\"):
        guard let escape = current else { throw fail("unterminated string") }
        position += 1
        switch escape {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0C)
        case UInt8(ascii: "n"): utf8.append(0x0A)
        case UInt8(ascii: "r"): utf8.append(0x0D)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
          var code = try parseHex4()
          if (0xD800..<0xDC00).contains(code) {
            // A surrogate pair: \uD8xx\uDCxx.
            try expect("\\u")
            let low = try parseHex4()
            guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate in a \\u escape") }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
          }
          guard let scalar = Unicode.Scalar(code) else { throw fail("unpaired surrogate in a \\u escape") }
          utf8.append(contentsOf: Array(String(Character(scalar)).utf8))
        default: throw fail("bad escape")
        }
      case 0..<0x20: throw fail("unescaped control character in a string")
      default: utf8.append(byte)
      }
    }
  }

  /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; an integer when it has neither part and fits.
  private mutating func parseNumber() throws -> HeaderValue {
    let start = position
    func digits() -> Int {
      var n = 0
      while let byte = current, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
        position += 1
        n += 1
      }
      return n
    }
    if current == UInt8(ascii: "-") { position += 1 }
    if current == UInt8(ascii: "0") {
      position += 1
    } else if digits() == 0 {
      throw fail("bad number")
    }
    var isInteger = true
    if current == UInt8(ascii: ".") {
      position += 1
      isInteger = false
      guard digits() > 0 else { throw fail("bad number") }
    }
    if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
      position += 1
      isInteger = false
      if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
      guard digits() > 0 else { throw fail("bad number") }
    }
    let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
    if isInteger, let value = Int(text) { return .integer(value) }
    return .number(Double(text) ?? .nan)
  }
}
