import FoundationEssentials
import Glibc

/// A parsed JSON document: the one reader of every JSON file the library reads (datasets, scenes,
/// results and references, the safetensors header, the training log).
///
/// Foundation's JSONSerialization takes ~10 s on a COCO-sized Karpathy file here (90 MB); this
/// parser reads bytes directly. RFC 8259 grammar, read strictly:
/// - a number written as an integer (no fraction, no exponent) that fits in an Int is `.integer`,
///   exactly; every other number is `.number` (so `2.0`, `1e3` and `2^63` are not integers);
/// - an object's keys are unique (a repeated key is an error) and keep their order;
/// - strings are valid UTF-8, and a `\u` escape of a surrogate must be one half of a pair;
/// - nesting deeper than `maximumDepth` is an error, not a crash.
/// A defect is reported at its byte offset with what was expected there.
/// Sendable stated, not inferred: a debug build (each file compiled on its own) stopped with
/// "circular reference" inferring it through JSONObject's members and back.
enum JSONValue: Sendable {
  case null
  case bool(Bool)
  case integer(Int)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object(JSONObject)

  static let maximumDepth = 512

  /// The largest JSON file read (dataset, scenes, results and references files: SPEC §5). Parsed
  /// whole, a file takes a few times its size in memory; larger ones are refused before reading.
  public static let maximumFileBytes = 256 << 20

  /// Parses a whole document; a defect is a `kind` error naming `file`:
  /// `bad JSON: line 2, column 6: expected ':' after a key (byte 15)`.
  static func parse(_ bytes: some ContiguousBytes, file: String, kind: CaptionError.Kind = .badDataset)
    throws -> JSONValue
  {
    try bytes.withUnsafeBytes { buffer in
      do {
        return try parse(buffer)
      } catch let error as JSONSyntaxError {
        var line = 1
        var column = 1
        for byte in buffer.prefix(error.offset) {
          if byte == 0x0A {
            line += 1
            column = 1
          } else if byte & 0xC0 != 0x80 {  // count characters, not UTF-8 continuation bytes
            column += 1
          }
        }
        throw CaptionError(
          kind, path: file, "bad JSON: line \(line), column \(column): \(error.reason) (byte \(error.offset))"
        )
      }
    }
  }

  /// Parses a whole document; a defect is a `JSONSyntaxError` (for a caller that names the place itself).
  static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSONValue {
    var parser = JSONParser(bytes: bytes)
    return try parser.parseDocument()
  }

  /// The number, whether written as an integer or not.
  var doubleValue: Double? {
    switch self {
    case .integer(let value): return Double(value)
    case .number(let value): return value
    default: return nil
    }
  }

  /// The integer, when written as one.
  var integerValue: Int? {
    if case .integer(let value) = self { return value }
    return nil
  }

  var stringValue: String? {
    if case .string(let value) = self { return value }
    return nil
  }

  var arrayValue: [JSONValue]? {
    if case .array(let value) = self { return value }
    return nil
  }

  var objectValue: JSONObject? {
    if case .object(let value) = self { return value }
    return nil
  }
}

/// A JSON object: its members in file order, keys unique.
struct JSONObject: Sendable {
  var members: [(key: String, value: JSONValue)]

  /// The value of `key`, nil when absent (a linear scan: the objects read are small, or iterated).
  subscript(key: String) -> JSONValue? {
    members.first { $0.key == key }?.value
  }
}

/// Where a document stops being JSON: the byte offset and what was expected there.
struct JSONSyntaxError: Error {
  var offset: Int
  var reason: String
}

/// Typed access to parsed JSON with errors that name the file and the place, like
/// `images[12].sentences: missing` or `annotations[3].image_id: expected an integer`.
struct JSONPlace {
  let file: String
  let place: String
  /// The kind of the errors (`.badDataset`; `.badResults` for a results file).
  var kind: CaptionError.Kind = .badDataset

  func fail(_ reason: String) -> CaptionError {
    CaptionError(kind, path: file, place.isEmpty ? reason : "\(place): \(reason)")
  }

  func child(_ key: String) -> JSONPlace {
    JSONPlace(file: file, place: place.isEmpty ? key : "\(place).\(key)", kind: kind)
  }
  func index(_ i: Int) -> JSONPlace { JSONPlace(file: file, place: "\(place)[\(i)]", kind: kind) }

  private func required(_ value: JSONValue?) throws -> JSONValue {
    guard let value else { throw fail("missing") }
    return value
  }

  func object(_ value: JSONValue?) throws -> JSONObject {
    guard let object = try required(value).objectValue else { throw fail("expected an object") }
    return object
  }

  func array(_ value: JSONValue?) throws -> [JSONValue] {
    guard let array = try required(value).arrayValue else { throw fail("expected an array") }
    return array
  }

  func string(_ value: JSONValue?) throws -> String {
    guard let string = try required(value).stringValue else { throw fail("expected a string") }
    return string
  }

  /// An integer: a JSON number written without a fraction or an exponent, within Int's range.
  func integer(_ value: JSONValue?) throws -> Int {
    guard let integer = try required(value).integerValue else { throw fail("expected an integer") }
    return integer
  }

  /// An optional integer: nil when absent or JSON null.
  func optionalInteger(_ value: JSONValue?) throws -> Int? {
    if value == nil { return nil }
    if case .null = value! { return nil }
    return try integer(value)
  }

  /// A number, integer or not.
  func number(_ value: JSONValue?) throws -> Double {
    guard let number = try required(value).doubleValue else { throw fail("expected a number") }
    return number
  }
}

/// Recursive descent over UTF-8 bytes.
struct JSONParser {
  let bytes: UnsafeRawBufferPointer
  var offset = 0
  var depth = 0
  /// Values read so far: every `Interrupted.checkEvery` of them, Ctrl-C/SIGTERM is looked for.
  var values = 0

  init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

  mutating func parseDocument() throws -> JSONValue {
    skipSpace()
    let value = try parseValue()
    skipSpace()
    guard offset == bytes.count else { throw fail("unexpected text after the JSON value") }
    return value
  }

  private func fail(_ reason: String, at position: Int? = nil) -> JSONSyntaxError {
    JSONSyntaxError(offset: position ?? offset, reason: reason)
  }

  private mutating func skipSpace() {
    while offset < bytes.count {
      switch bytes[offset] {
      case 0x20, 0x0A, 0x0D, 0x09: offset += 1
      default: return
      }
    }
  }

  private func peek() -> UInt8? { offset < bytes.count ? bytes[offset] : nil }

  private mutating func expect(_ byte: UInt8, _ what: String) throws {
    guard peek() == byte else {
      throw fail(peek() == nil ? "unexpected end of file, expected \(what)" : "expected \(what)")
    }
    offset += 1
  }

  private mutating func parseValue() throws -> JSONValue {
    values &+= 1
    if values & (Interrupted.checkEvery - 1) == 0 { try Interrupted.check() }
    guard let byte = peek() else { throw fail("unexpected end of file, expected a value") }
    switch byte {
    case UInt8(ascii: "{"): return try parseObject()
    case UInt8(ascii: "["): return try parseArray()
    case UInt8(ascii: "\""): return .string(try parseString())
    case UInt8(ascii: "t"): return try parseWord("true", .bool(true))
    case UInt8(ascii: "f"): return try parseWord("false", .bool(false))
    case UInt8(ascii: "n"): return try parseWord("null", .null)
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
    default: throw fail("invalid value")
    }
  }

  private mutating func parseWord(_ word: StaticString, _ value: JSONValue) throws -> JSONValue {
    let count = word.utf8CodeUnitCount
    guard offset + count <= bytes.count,
      memcmp(bytes.baseAddress! + offset, word.utf8Start, count) == 0
    else { throw fail("invalid value") }
    offset += count
    return value
  }

  private mutating func enter() throws {
    depth += 1
    guard depth <= JSONValue.maximumDepth else {
      throw fail("nested deeper than \(JSONValue.maximumDepth) levels")
    }
  }

  private mutating func parseObject() throws -> JSONValue {
    try enter()
    offset += 1  // {
    var members: [(key: String, value: JSONValue)] = []
    var keys: Set<String>? = nil  // the keys so far, once there are too many to compare one by one
    skipSpace()
    if peek() == UInt8(ascii: "}") {
      offset += 1
      depth -= 1
      return .object(JSONObject(members: members))
    }
    while true {
      skipSpace()
      guard peek() == UInt8(ascii: "\"") else { throw fail("expected a string key") }
      let keyOffset = offset
      let key = try parseString()
      let repeated: Bool
      if members.count < 16 {
        repeated = members.contains { $0.key == key }
      } else {
        if keys == nil { keys = Set(members.map(\.key)) }
        repeated = !keys!.insert(key).inserted
      }
      if repeated { throw fail("key \"\(key.prefix(60))\" appears twice in an object", at: keyOffset) }
      skipSpace()
      try expect(UInt8(ascii: ":"), "':' after a key")
      skipSpace()
      members.append((key, try parseValue()))
      skipSpace()
      if peek() == UInt8(ascii: ",") {
        offset += 1
        continue
      }
      try expect(UInt8(ascii: "}"), "',' or '}' in an object")
      depth -= 1
      return .object(JSONObject(members: members))
    }
  }

  private mutating func parseArray() throws -> JSONValue {
    try enter()
    offset += 1  // [
    var array: [JSONValue] = []
    skipSpace()
    if peek() == UInt8(ascii: "]") {
      offset += 1
      depth -= 1
      return .array(array)
    }
    while true {
      skipSpace()
      array.append(try parseValue())
      skipSpace()
      if peek() == UInt8(ascii: ",") {
        offset += 1
        continue
      }
      try expect(UInt8(ascii: "]"), "',' or ']' in an array")
      depth -= 1
      return .array(array)
    }
  }

  /// A string; `offset` is at the opening quote. Its bytes must be valid UTF-8.
  private mutating func parseString() throws -> String {
    let quote = offset
    offset += 1
    let start = offset
    var ascii = true  // then the bytes are valid UTF-8 as they are (the common case, and fast)
    func text(_ utf8: UnsafeRawBufferPointer) throws -> String {
      if ascii { return String(decoding: utf8, as: UTF8.self) }
      guard let text = String(validating: utf8, as: UTF8.self) else {
        throw fail("invalid UTF-8 in a string", at: quote)
      }
      return text
    }
    // Fast path: no escapes.
    while offset < bytes.count {
      let byte = bytes[offset]
      if byte == UInt8(ascii: "\"") {
        let string = try text(UnsafeRawBufferPointer(rebasing: bytes[start..<offset]))
        offset += 1
        return string
      }
      if byte == UInt8(ascii: "\\") { break }
      if byte < 0x20 { throw fail("control character in a string") }
      if byte >= 0x80 { ascii = false }
      offset += 1
    }
    var utf8 = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<offset]))
    while true {
      guard offset < bytes.count else { throw fail("unexpected end of file in a string") }
      let byte = bytes[offset]
      offset += 1
      switch byte {
      case UInt8(ascii: "\""):
        return try utf8.withUnsafeBytes(text)
      case UInt8(ascii: "\\"):
        guard let escaped = peek() else { throw fail("unexpected end of file in a string") }
        offset += 1
        switch escaped {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escaped)
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0C)
        case UInt8(ascii: "n"): utf8.append(0x0A)
        case UInt8(ascii: "r"): utf8.append(0x0D)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
          let escape = offset - 2
          var code = try parseHex4()
          if (0xD800..<0xDC00).contains(code), peek() == UInt8(ascii: "\\"),
            offset + 1 < bytes.count, bytes[offset + 1] == UInt8(ascii: "u")
          {
            offset += 2
            let low = try parseHex4()
            guard (0xDC00..<0xE000).contains(low) else {
              throw fail("unpaired surrogate in a \\u escape", at: escape)
            }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
          }
          guard let scalar = Unicode.Scalar(code) else {
            throw fail("unpaired surrogate in a \\u escape", at: escape)
          }
          if code >= 0x80 { ascii = false }
          utf8.append(contentsOf: String(Character(scalar)).utf8)
        default:
          offset -= 1
          throw fail("invalid escape in a string")
        }
      default:
        if byte < 0x20 {
          offset -= 1
          throw fail("control character in a string")
        }
        if byte >= 0x80 { ascii = false }
        utf8.append(byte)
      }
    }
  }

  private mutating func parseHex4() throws -> UInt32 {
    guard offset + 4 <= bytes.count else { throw fail("unexpected end of file in a \\u escape") }
    var value: UInt32 = 0
    for _ in 0..<4 {
      let byte = bytes[offset]
      let digit: UInt32
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
      default: throw fail("invalid \\u escape")
      }
      value = value << 4 | digit
      offset += 1
    }
    return value
  }

  /// A number per the JSON grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`;
  /// `.integer` when it has neither part and fits in an Int.
  private mutating func parseNumber() throws -> JSONValue {
    let start = offset
    var negative = false
    if peek() == UInt8(ascii: "-") {
      negative = true
      offset += 1
    }
    func isDigit(_ b: UInt8?) -> Bool { b.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
    guard isDigit(peek()) else { throw fail("invalid number") }
    // The magnitude, while it fits in 64 bits.
    var magnitude: UInt64 = 0
    var fits = true
    if peek() == UInt8(ascii: "0") {
      offset += 1
    } else {
      while isDigit(peek()) {
        let (times10, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
        let (sum, overflow2) = times10.addingReportingOverflow(UInt64(bytes[offset] - 0x30))
        fits = fits && !overflow1 && !overflow2
        magnitude = sum
        offset += 1
      }
    }
    var isInteger = true
    if peek() == UInt8(ascii: ".") {
      isInteger = false
      offset += 1
      guard isDigit(peek()) else { throw fail("invalid number") }
      while isDigit(peek()) { offset += 1 }
    }
    if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
      isInteger = false
      offset += 1
      if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { offset += 1 }
      guard isDigit(peek()) else { throw fail("invalid number") }
      while isDigit(peek()) { offset += 1 }
    }
    if isInteger && fits {
      if !negative && magnitude <= UInt64(Int.max) { return .integer(Int(magnitude)) }
      if negative && magnitude <= UInt64(Int.max) + 1 {
        return .integer(Int(truncatingIfNeeded: 0 &- magnitude))
      }
    }
    let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<offset]), as: UTF8.self)
    guard let value = Double(text) else { throw fail("invalid number") }
    return .number(value)
  }
}
