/// The lines `caption describe` prints (SPEC §2).
public enum DescribeOutput {
  /// `PATH: caption`, or the bare caption (`bare`: exactly one file argument was given); control
  /// characters in either are escaped (`PrintableText`), so that one image is always one line.
  public static func plainLine(path: String, caption: String, bare: Bool) -> String {
    PrintableText.escaped(bare ? caption : path + ": " + caption)
  }

  /// `{"image": PATH, "caption": TEXT, "tokens": [WORDS], "logprob": FLOAT}`: these keys in this
  /// order, the caption being the words joined by single spaces. A non-finite logprob is `null`.
  public static func jsonLine(path: String, tokens: [String], logprob: Double) -> String {
    var line = "{\"image\": " + jsonString(path)
    line += ", \"caption\": " + jsonString(tokens.joined(separator: " "))
    line += ", \"tokens\": [" + tokens.map(jsonString).joined(separator: ", ") + "]"
    line += ", \"logprob\": " + jsonNumber(logprob) + "}"
    return line
  }

  /// What `describe` prints for one image: a line for stdout (none in plain mode when the image
  /// failed) and a line for stderr (the error's `path: reason`, when it failed). With `json`, a
  /// failure is also an error object on stdout, its message the error's reason. `familiar` (SPEC
  /// §3c): nil leaves it out; otherwise JSON gains the key `familiar` (true, false, or null when the
  /// model has no calibration) and plain output an `unfamiliarNote` on stderr for an unfamiliar image.
  /// `rerank` (a reranked caption, SPEC §3b) adds `"cosine"` and `"rerank_score"` after `logprob`.
  public static func lines(
    path: String, outcome: Result<(words: [String], logprob: Double), CaptionError>, json: Bool,
    bare: Bool, familiar: FamiliarVerdict? = nil, rerank: RerankScore? = nil
  ) -> (stdout: String?, stderr: String?) {
    switch outcome {
    case .success(let caption):
      if json {
        var line = jsonLine(path: path, tokens: caption.words, logprob: caption.logprob)
        if let rerank {
          line =
            String(line.dropLast()) + ", \"cosine\": " + jsonNumber(rerank.cosine)
            + ", \"rerank_score\": " + jsonNumber(rerank.score) + "}"
        }
        if let familiar { line = String(line.dropLast()) + ", \"familiar\": " + familiar.json + "}" }
        return (line, nil)
      }
      let line = plainLine(path: path, caption: caption.words.joined(separator: " "), bare: bare)
      return (line, familiar == .unfamiliar ? unfamiliarNote(path: path) : nil)
    case .failure(let error):
      return (json ? jsonErrorLine(path: path, message: error.reason) : nil, error.description)
    }
  }

  /// The stderr line of plain `describe` for an image unlike the model's training images.
  public static func unfamiliarNote(path: String) -> String {
    path + ": the image is unlike the model's training images; the caption may be wrong"
  }

  /// `{"image": PATH, "error": MESSAGE}` for an image that failed.
  public static func jsonErrorLine(path: String, message: String) -> String {
    "{\"image\": " + jsonString(path) + ", \"error\": " + jsonString(message) + "}"
  }

  /// A JSON string literal (see `JSONText.quoted`).
  public static func jsonString(_ text: String) -> String { JSONText.quoted(text) }

  /// The shortest decimal that reads back as `value` (Swift's `description`), `null` when not finite.
  public static func jsonNumber(_ value: Double) -> String {
    value.isFinite ? "\(value)" : "null"
  }
}

/// `describe`'s familiarity verdict for one image (SPEC §3c).
public enum FamiliarVerdict: Equatable, Sendable {
  case familiar, unfamiliar
  /// The model has no familiarity calibration.
  case unknown

  public init(_ familiar: Bool?) {
    switch familiar {
    case true?: self = .familiar
    case false?: self = .unfamiliar
    case nil: self = .unknown
    }
  }

  /// `true`, `false` or `null`.
  public var json: String {
    switch self {
    case .familiar: return "true"
    case .unfamiliar: return "false"
    case .unknown: return "null"
    }
  }
}
