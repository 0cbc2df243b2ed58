/// Text from files and users made safe for one line of a message or an output (SPEC §2): control
/// characters escaped, so that a file name cannot break a line, forge one or reach the terminal as
/// an escape sequence, and names cut to a readable length.
public enum PrintableText {
  /// The most characters of a file name a message shows; longer names end in `…`.
  public static let maximumNameLength = 200
  /// The most characters of an error's reason (which may quote names from a file).
  public static let maximumReasonLength = 1000

  /// `text` with every control character (U+0000–U+001F, U+007F–U+009F) written as `\n`, `\r`,
  /// `\t`, `\0` or `\u{XX}` (hexadecimal); every other character, backslash included, unchanged.
  public static func escaped(_ text: String) -> String {
    escaped(text, limit: Int.max)
  }

  /// `escaped(text)`, cut to at most `limit` characters (Unicode scalars), the
  /// last being `…` when it was cut.
  public static func escaped(_ text: String, limit: Int) -> String {
    guard text.unicodeScalars.contains(where: isControl) || text.unicodeScalars.count > limit else {
      return text
    }
    var out: [Unicode.Scalar] = []
    for scalar in text.unicodeScalars {
      if isControl(scalar) {
        out += escape(scalar).unicodeScalars
      } else {
        out.append(scalar)
      }
      if out.count > limit { break }  // cut below: no need to look further
    }
    if out.count > limit { out = out.prefix(max(limit - 1, 0)) + ["…"] }
    var result = String.UnicodeScalarView()
    result.append(contentsOf: out)
    return String(result)
  }

  /// A file name for a message: escaped, and cut to `maximumNameLength` characters.
  public static func name(_ path: String) -> String {
    escaped(path, limit: maximumNameLength)
  }

  static func isControl(_ scalar: Unicode.Scalar) -> Bool {
    scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
  }

  private static func escape(_ scalar: Unicode.Scalar) -> String {
    switch scalar {
    case "\n": return "\\n"
    case "\r": return "\\r"
    case "\t": return "\\t"
    case "\0": return "\\0"
    default: return "\\u{" + String(scalar.value, radix: 16) + "}"
    }
  }
}
