/// The tokeniser of SPEC §6 (the COCO caption evaluation's PTB tokenizer, then its punctuation removal).
///
/// PLACEHOLDER: lowercases and splits on whitespace, strips a trailing period. The metrics work
/// replaces this body with the full PTB behaviour; the signature stays.
public enum PTBTokenizer {
  public static func tokenize(_ text: String) -> [String] {
    text.lowercased().split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map {
      var word = String($0)
      while word.hasSuffix(".") || word.hasSuffix(",") { word.removeLast() }
      return word
    }.filter { !$0.isEmpty }
  }
}
