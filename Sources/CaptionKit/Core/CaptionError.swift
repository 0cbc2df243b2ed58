import CShims

/// Every failure the library reports to a user: the file (or other subject) and the reason, on one line.
///
/// The command line prints `description` on stderr and exits with status 1.
public struct CaptionError: Error, CustomStringConvertible, Equatable, Sendable {
  /// What went wrong, as a category tests can match.
  public enum Kind: String, Sendable {
    case unsupportedFormat = "unsupported image format"
    case truncated = "truncated"
    case corrupt = "corrupt"
    case tooLarge = "too large"
    case unreadable = "unreadable"
    case notAFile = "not a file"
    case badModel = "bad model"
    case badDataset = "bad dataset"
    case badResults = "bad results"
    case io = "i/o error"
    case invalidArgument = "invalid argument"
  }

  public var kind: Kind
  /// The file (or other subject) the error is about.
  public var path: String
  /// The detail, in words a user understands.
  public var reason: String

  public init(_ kind: Kind, path: String, _ reason: String) {
    self.kind = kind
    self.path = path
    self.reason = reason
  }

  /// One line: `path: reason`, control characters escaped, the path cut to
  /// `PrintableText.maximumNameLength` characters and the reason to `maximumReasonLength`.
  public var description: String {
    let oneLine = PrintableText.escaped(reason, limit: PrintableText.maximumReasonLength)
    return path.isEmpty ? oneLine : PrintableText.name(path) + ": " + oneLine
  }

  /// A failure to decode JSON into a Swift type (`JSONDecoder`) in a few words: the key path and
  /// what was wrong, without the decoder's dump of its context.
  public static func decodingReason(_ error: Error) -> String {
    guard let error = error as? DecodingError else { return "\(error)" }
    func path(_ context: DecodingError.Context) -> String {
      let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
      return keys.isEmpty ? "" : "at \(keys.joined(separator: ".")): "
    }
    switch error {
    case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
      return path(context) + context.debugDescription
    case .keyNotFound(let key, let context):
      return path(context) + "key \"\(key.stringValue)\" is missing"
    @unknown default:
      return "\(error)"
    }
  }
}

/// Ctrl-C/SIGTERM stopped work that had nothing to save yet (the command line exits 130).
public struct Interrupted: Error, Sendable {
  public init() {}

  /// Throws once Ctrl-C/SIGTERM arrived: the flag of CShims/signals.c, which only a command that can
  /// stop cleanly sets (train, dataset shapes). Long loops over input (the JSON reader, the dataset
  /// readers, tokenising) call it every few thousand items, so that set-up stops within a second.
  public static func check() throws {
    if caption_interrupt_requested() != 0 { throw Interrupted() }
  }

  /// How many items a loop handles between two checks (a power of two).
  static let checkEvery = 4096
}
