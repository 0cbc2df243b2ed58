import Foundation

/// A parsed JSON document, for the dataset readers.
///
/// Foundation's JSONSerialization takes ~10 s on a COCO-sized Karpathy file here (90 MB); this
/// parser reads bytes directly and reports a syntax error's line and column. RFC 8259 grammar;
/// duplicate keys keep the last value; nesting deeper than `maximumDepth` is an error, not a crash.
enum JSONValue {
  case null
  case bool(Bool)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  static let maximumDepth = 512

  /// Parses `bytes`; a syntax error names `file`, the line and the column.
  static func parse(_ bytes: [UInt8], file: String) throws -> JSONValue {
    try bytes.withUnsafeBufferPointer { buffer in
      var parser = JSONParser(bytes: buffer)
      do {
        let value = try parser.parseDocument()
        return value
      } catch let error as JSONParser.Failure {
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
          .badDataset, path: file, "bad JSON: line \(line), column \(column): \(error.reason)")
      }
    }
  }
}

/// Recursive descent over UTF-8 bytes.
struct JSONParser {
  struct Failure: Error {
    var offset: Int
    var reason: String
  }

  let bytes: UnsafeBufferPointer<UInt8>
  var offset = 0
  var depth = 0

  init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

  mutating func parseDocument() throws -> JSONValue {
    skipSpace()
    let value = try parseValue()
    skipSpace()
    guard offset == bytes.count else { throw fail("unexpected text after the JSON value") }
    return value
  }

  private func fail(_ reason: String) -> Failure { Failure(offset: offset, reason: reason) }

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
    guard let byte = peek() else { throw fail("unexpected end of file, expected a value") }
    switch byte {
    case UInt8(ascii: "{"): return try parseObject()
    case UInt8(ascii: "["): return try parseArray()
    case UInt8(ascii: "\""): return .string(try parseString())
    case UInt8(ascii: "t"): return try parseWord("true", .bool(true))
    case UInt8(ascii: "f"): return try parseWord("false", .bool(false))
    case UInt8(ascii: "n"): return try parseWord("null", .null)
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
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
    var object: [String: JSONValue] = [:]
    skipSpace()
    if peek() == UInt8(ascii: "}") {
      offset += 1
      depth -= 1
      return .object(object)
    }
    while true {
      skipSpace()
      guard peek() == UInt8(ascii: "\"") else { throw fail("expected a string key") }
      let key = try parseString()
      skipSpace()
      try expect(UInt8(ascii: ":"), "':' after a key")
      skipSpace()
      object[key] = try parseValue()
      skipSpace()
      if peek() == UInt8(ascii: ",") {
        offset += 1
        continue
      }
      try expect(UInt8(ascii: "}"), "',' or '}' in an object")
      depth -= 1
      return .object(object)
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

  /// A string; `offset` is at the opening quote.
  private mutating func parseString() throws -> String {
    offset += 1
    let start = offset
    // Fast path: no escapes.
    while offset < bytes.count {
      let byte = bytes[offset]
      if byte == UInt8(ascii: "\"") {
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<offset]), as: UTF8.self)
        offset += 1
        return text
      }
      if byte == UInt8(ascii: "\\") { break }
      if byte < 0x20 { throw fail("control character in a string") }
      offset += 1
    }
    var utf8 = Array(UnsafeBufferPointer(rebasing: bytes[start..<offset]))
    while true {
      guard offset < bytes.count else { throw fail("unexpected end of file in a string") }
      let byte = bytes[offset]
      offset += 1
      switch byte {
      case UInt8(ascii: "\""):
        return String(decoding: utf8, as: UTF8.self)
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
          var scalar = try parseHex4()
          if (0xD800..<0xDC00).contains(scalar), peek() == UInt8(ascii: "\\"),
            offset + 1 < bytes.count, bytes[offset + 1] == UInt8(ascii: "u")
          {
            let saved = offset
            offset += 2
            let low = try parseHex4()
            if (0xDC00..<0xE000).contains(low) {
              scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else {
              offset = saved  // not a pair: the high half stands alone
            }
          }
          utf8.append(contentsOf: String(Unicode.Scalar(scalar).map(Character.init) ?? "\u{FFFD}").utf8)
        default:
          offset -= 1
          throw fail("invalid escape in a string")
        }
      default:
        if byte < 0x20 {
          offset -= 1
          throw fail("control character in a string")
        }
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

  /// A number per the JSON grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
  private mutating func parseNumber() throws -> Double {
    let start = offset
    var negative = false
    if peek() == UInt8(ascii: "-") {
      negative = true
      offset += 1
    }
    func isDigit(_ b: UInt8?) -> Bool { b.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
    guard isDigit(peek()) else { throw fail("invalid number") }
    var integer: UInt64 = 0
    var digits = 0
    if peek() == UInt8(ascii: "0") {
      offset += 1
      digits = 1
    } else {
      while isDigit(peek()) {
        if digits < 18 { integer = integer * 10 + UInt64(bytes[offset] - 0x30) }
        digits += 1
        offset += 1
      }
    }
    var simple = digits <= 15
    if peek() == UInt8(ascii: ".") {
      simple = false
      offset += 1
      guard isDigit(peek()) else { throw fail("invalid number") }
      while isDigit(peek()) { offset += 1 }
    }
    if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
      simple = false
      offset += 1
      if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { offset += 1 }
      guard isDigit(peek()) else { throw fail("invalid number") }
      while isDigit(peek()) { offset += 1 }
    }
    if simple { return negative ? -Double(integer) : Double(integer) }
    let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<offset]), as: UTF8.self)
    guard let value = Double(text) else { throw fail("invalid number") }
    return value
  }
}
