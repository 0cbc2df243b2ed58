/// Writing JSON text by hand where the key order or the layout matters (describe's lines, the
/// dataset writer).
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
}
