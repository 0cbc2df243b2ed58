import FoundationEssentials

/// Writing JSON text: by hand where the key order or the layout matters (describe's lines, the
/// dataset writer), and from the plain trees commands build (`[String: Any]` of strings, numbers,
/// booleans, arrays, dictionaries and nil) with keys sorted by code point and numbers in their
/// shortest form (`14`, `0.1`, `1e-07`), through JSONEncoder.
public enum JSONText {
  /// A JSON string literal (RFC 8259 §7): `"` and `\` escaped, control characters (C0, DEL and C1)
  /// as `\n`, `\t`, ... or `\u00XX`, everything else (any Unicode) as UTF-8.
  public static func quoted(_ text: String) -> String {
    var out = "\""
    out.reserveCapacity(text.utf8.count + 2)
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case "\u{08}": out += "\\b"
      case "\u{0C}": out += "\\f"
      case "\u{2028}": out += "\\u2028"  // valid raw in JSON, but not in JavaScript source
      case "\u{2029}": out += "\\u2029"
      default:
        if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
          let hex = String(scalar.value, radix: 16)
          out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        } else {
          out.unicodeScalars.append(scalar)
        }
      }
    }
    return out + "\""
  }

  /// One line of JSON (`pretty`: indented, one member a line, `"key" : value`); `escapingSlashes`
  /// writes `/` as `\/`. A value that has no JSON form (NaN, infinity, a type not listed above)
  /// is an error.
  public static func encode(_ object: Any, pretty: Bool = false, escapingSlashes: Bool = false) throws
    -> String
  {
    let encoder = JSONEncoder()
    var formatting: JSONEncoder.OutputFormatting = [.sortedKeys]
    if pretty { formatting.insert(.prettyPrinted) }
    if !escapingSlashes { formatting.insert(.withoutEscapingSlashes) }
    encoder.outputFormatting = formatting
    return String(decoding: try encoder.encode(try JSONTree(object)), as: UTF8.self)
  }

  /// Whether `text` is one JSON value (an object, array, string, number, boolean or null).
  public static func isJSON(_ text: String) -> Bool { parse(text) != nil }

  /// `text` as JSON, nil when it is not.
  static func parse(_ text: String) -> JSONValue? {
    var text = text
    return text.withUTF8 { try? JSONValue.parse(UnsafeRawBufferPointer($0)) }
  }
}

/// A value with no JSON form met while encoding a tree.
struct JSONTreeError: Error, CustomStringConvertible {
  var description: String
}

/// A plain tree (or a parsed JSONValue) as JSONEncoder takes it.
private indirect enum JSONTree: Encodable {
  case null
  case bool(Bool)
  case integer(Int)
  case unsigned(UInt64)  // past Int.max (a seed), written exactly
  case number(Double)
  case string(String)
  case array([JSONTree])
  case object([(key: String, value: JSONTree)])

  init(_ tree: Any) throws {
    switch tree {
    case let value as JSONValue: self = try JSONTree(parsed: value)
    case let value as String: self = .string(value)
    case let value as Substring: self = .string(String(value))
    case let value as Bool: self = .bool(value)
    case let value as any BinaryInteger:
      if let small = Int(exactly: value) {
        self = .integer(small)
      } else if let large = UInt64(exactly: value) {
        self = .unsigned(large)
      } else {
        throw JSONTreeError(description: "no JSON form for the integer \(value)")
      }
    case let value as Double: self = try JSONTree(number: value)
    // a Float's shortest decimal (0.485), not its binary value's (0.48500001430511475)
    case let value as Float: self = try JSONTree(number: value.isFinite ? Double("\(value)")! : Double(value))
    case let value as [String: Any]:
      self = .object(try value.map { (key: $0.key, value: try JSONTree($0.value)) })
    case let value as [Any]: self = .array(try value.map { try JSONTree($0) })
    case Optional<Any>.none: self = .null
    default: throw JSONTreeError(description: "no JSON form for a value of type \(type(of: tree))")
    }
  }

  init(number: Double) throws {
    guard number.isFinite else { throw JSONTreeError(description: "no JSON form for \(number)") }
    self = .number(number)
  }

  init(parsed: JSONValue) throws {
    switch parsed {
    case .null: self = .null
    case .bool(let value): self = .bool(value)
    case .integer(let value): self = .integer(value)
    case .number(let value): self = try JSONTree(number: value)
    case .string(let value): self = .string(value)
    case .array(let values): self = .array(try values.map { try JSONTree(parsed: $0) })
    case .object(let object):
      self = .object(try object.members.map { (key: $0.key, value: try JSONTree(parsed: $0.value)) })
    }
  }

  private struct Key: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
  }

  func encode(to encoder: any Swift.Encoder) throws {
    switch self {
    case .array(let values):
      var container = encoder.unkeyedContainer()
      for value in values { try container.encode(value) }
    case .object(let members):
      var container = encoder.container(keyedBy: Key.self)
      for (key, value) in members { try container.encode(value, forKey: Key(stringValue: key)) }
    default:
      var container = encoder.singleValueContainer()
      switch self {
      case .bool(let value): try container.encode(value)
      case .integer(let value): try container.encode(value)
      case .unsigned(let value): try container.encode(value)
      case .number(let value): try container.encode(value)
      case .string(let value): try container.encode(value)
      default: try container.encodeNil()
      }
    }
  }
}
