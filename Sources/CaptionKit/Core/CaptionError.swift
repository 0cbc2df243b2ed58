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

  /// One line: `path: reason`.
  public var description: String {
    let oneLine = reason.replacingOccurrences(of: "\n", with: " ")
    return path.isEmpty ? oneLine : "\(path): \(oneLine)"
  }
}
