import FoundationEssentials
import Glibc

/// The tokeniser of SPEC §6: what the COCO caption evaluation (pycocoevalcap 1.2) does to a caption,
/// namely Stanford's PTBTokenizer (CoreNLP 3.4.1) with `-preserveLines -lowerCase`, then removal of
/// the punctuation tokens `'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;`.
///
/// A hand-written scanner, not a port of the JFlex grammar: at each position it measures the few
/// token shapes that can start there (number, hyphenated word, dotted word or acronym, slash word,
/// `AT&T`-style word) and takes the longest, as the lexer's longest-match rule does, then applies the
/// lexer's rewrites (clitics split off, `(` → `-LRB-`, quotes, currency, dashes, ellipses).
/// Behaviour measured against the real tokenizer is pinned by Tests/…/Fixtures/metrics/tokenizer.json.
public enum PTBTokenizer {
  /// The tokens of one caption, lowercased, punctuation tokens removed.
  public static func tokenize(_ text: String) -> [String] {
    tokenize(text, reads: nil)
  }

  /// `tokenize`, adding to `reads` the scalars the scanner looked at (tests bound its work with it).
  static func tokenize(_ text: String, reads: UnsafeMutablePointer<Int>?) -> [String] {
    var scanner = PTBScanner(Array(text.unicodeScalars), reads: reads)
    scanner.run()
    return scanner.tokens
  }

  /// The tokens pycocoevalcap removes after tokenising (compared after lowercasing, so the bracket
  /// tokens, which the lowercasing turned into `-lrb-` …, are not among them).
  static let removed: Set<String> = ["''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"]

  /// Abbreviations that keep their period (compared lowercased): titles, months, days, company words.
  static let abbreviations: Set<String> = [
    "mr", "mrs", "ms", "dr", "drs", "prof", "profs", "sen", "sens", "rep", "reps", "atty", "attys", "lt",
    "col", "gen", "messrs", "gov", "govs", "adm", "rev", "maj", "sgt", "cpl", "pvt", "mt", "capt", "st",
    "ste", "ave", "pres", "lieut", "hon", "brig", "cmdr", "comdr", "pfc", "spc", "supt", "supts", "det",
    "jr", "sr", "bros", "blvd", "rd", "esq", "inc", "co", "cos", "corp", "ltd", "plc", "bancorp", "dept",
    "bhd", "assn", "univ", "intl", "sys", "invt", "elec", "natl", "mfg", "mtg", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "tues", "wed", "thu", "thurs",
    "fri", "etc", "al", "seq", "vs", "cf", "alex", "wm", "jos", "cie", "calif", "ala", "ariz", "colo",
    "conn", "fla", "minn", "mich", "okla", "wyo", "ph.d", "ed.d",
  ]

  /// Abbreviations that keep their period only when capitalised (`Tex.` but `tex .`): US states that
  /// are also words.
  static let capitalisedAbbreviations: Set<String> = [
    "Tex", "Pa", "Mo", "Ill", "Mass", "Wash", "Miss", "Ark", "Ore", "Ind", "La", "Va", "Ga", "Md", "Ky",
    "Del", "Neb", "Nev", "Mont", "Tenn", "Vt", "Wis", "Wisc", "Penn", "Dak", "Kan", "Kans", "Fig",
  ]

  /// Abbreviations that keep their period before a number (`No. 5`, `fig. 3`).
  static let numberAbbreviations: Set<String> = [
    "no", "nos", "fig", "figs", "prop", "tel", "est", "ext", "sq", "ft", "ph", "vol", "pp", "op",
  ]

  /// Words the lexer splits in two: `cannot` → `can not`, `gonna` → `gon na`, ….
  static let splitWords: [String: Int] = [
    "cannot": 3, "gonna": 3, "gotta": 3, "wanna": 3, "gimme": 3, "lemme": 3,
  ]
}

/// One pass over a line's scalars, appending finished tokens.
struct PTBScanner {
  let text: [Unicode.Scalar]
  /// Whether the line holds an `@` (else no e-mail address needs looking for).
  let hasAt: Bool
  var position = 0
  var tokens: [String] = []
  /// Counts the calls of `scalar(_:)`, the token shapes' only way of looking ahead, when set.
  let reads: UnsafeMutablePointer<Int>?
  /// Positions before which a hyphenated word, or an e-mail address, is known not to start.
  var noHyphenatedBefore = 0
  var noEmailBefore = 0

  init(_ text: [Unicode.Scalar], reads: UnsafeMutablePointer<Int>? = nil) {
    // Soft hyphens vanish from words; dropping them everywhere is the same for the tokens that remain.
    self.text = text.contains("\u{AD}") ? text.filter { $0 != "\u{AD}" } : text
    hasAt = text.contains("@")
    self.reads = reads
  }

  // MARK: Character classes

  @inline(__always) func scalar(_ index: Int) -> Unicode.Scalar? {
    reads?.pointee += 1
    return index < text.count ? text[index] : nil
  }

  static func isLetter(_ s: Unicode.Scalar) -> Bool {
    if s.isASCII { return (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") }
    guard s.value <= 0xFFFF else { return false }
    switch s.properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
      .nonspacingMark, .spacingMark, .enclosingMark:
      return true
    default:
      return false
    }
  }

  static func isDigit(_ s: Unicode.Scalar) -> Bool {
    if s.isASCII { return s >= "0" && s <= "9" }
    return s.value <= 0xFFFF && s.properties.generalCategory == .decimalNumber
  }

  static func isAlnum(_ s: Unicode.Scalar) -> Bool { isLetter(s) || isDigit(s) }

  static func isSpace(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x00, 0x09...0x0D, 0x20, 0x85, 0xA0, 0x2000...0x200B, 0x200E, 0x200F, 0x2028, 0x2029, 0x3000,
      0xFEFF:
      return true
    default:
      return false
    }
  }

  /// `'`, `’` (and the CP1252 one): the apostrophes of clitics.
  static func isApostrophe(_ s: Unicode.Scalar) -> Bool { s == "'" || s == "\u{2019}" || s == "\u{92}" }

  /// Quote characters that pair up into one token (`“‘` is one token), and their PTB spelling.
  static func quoteSpelling(_ s: Unicode.Scalar) -> String? {
    switch s {
    case "`", "\u{2018}", "\u{201B}", "\u{2039}", "\u{91}": return "`"
    case "\u{2019}", "\u{203A}", "\u{92}": return "'"
    case "\u{201C}", "\u{AB}", "\u{93}": return "``"
    case "\u{201D}", "\u{BB}", "\u{94}": return "''"
    case "\u{201A}", "\u{201E}", "\u{201F}": return String(Character(s))
    default: return nil
    }
  }

  static let vowels: Set<Unicode.Scalar> = ["a", "e", "i", "o", "u", "y", "A", "E", "I", "O", "U", "Y"]

  func isLetter(at index: Int) -> Bool { scalar(index).map(PTBScanner.isLetter) ?? false }
  func isDigit(at index: Int) -> Bool { scalar(index).map(PTBScanner.isDigit) ?? false }
  func isAlnum(at index: Int) -> Bool { scalar(index).map(PTBScanner.isAlnum) ?? false }
  func isASCIIAlnum(at index: Int) -> Bool {
    scalar(index).map { $0.isASCII && PTBScanner.isAlnum($0) } ?? false
  }
  func isApostrophe(at index: Int) -> Bool { scalar(index).map(PTBScanner.isApostrophe) ?? false }
  func isSpace(at index: Int) -> Bool { scalar(index).map(PTBScanner.isSpace) ?? false }
  func isOneOf(_ index: Int, _ characters: StaticString) -> Bool {
    guard let s = scalar(index) else { return false }
    if characters.isASCII {
      guard s.isASCII else { return false }
      let byte = UInt8(s.value)
      return characters.withUTF8Buffer { $0.contains(byte) }
    }
    return characters.description.unicodeScalars.contains(s)
  }

  func string(_ start: Int, _ end: Int) -> String {
    var s = String.UnicodeScalarView()
    s.append(contentsOf: text[start..<end])
    return String(s)
  }

  /// The lowercased text of `start..<end` (fast for ASCII).
  func lowered(_ start: Int, _ end: Int) -> String {
    var ascii = true
    for i in start..<end where !text[i].isASCII {
      ascii = false
      break
    }
    guard ascii else { return string(start, end).lowercased() }
    return String(unsafeUninitializedCapacity: end - start) { buffer in
      for i in start..<end {
        var byte = UInt8(text[i].value)
        if byte >= 65 && byte <= 90 { byte += 32 }
        buffer[i - start] = byte
      }
      return end - start
    }
  }

  // MARK: Output

  /// Appends a token (lowercased) unless it is one of the punctuation tokens the COCO code removes.
  mutating func emit(_ start: Int, _ end: Int) {
    append(lowered(start, end))
  }

  mutating func emit(_ token: String) {
    append(token.lowercased())
  }

  mutating func append(_ lower: String) {
    if lower.utf8.count <= 3, PTBTokenizer.removed.contains(lower) { return }
    tokens.append(lower)
  }

  // MARK: Token shapes (each returns the end index of its longest match at `start`, or nil)

  /// `[-+]? (digits | digits* ([.:,] digits)+)`.
  func numberEnd(_ start: Int) -> Int? {
    var i = start
    if let s = scalar(i), s == "-" || s == "+" { i += 1 }
    var end: Int? = nil
    let digits = i
    while isDigit(at: i) { i += 1 }
    if i > digits { end = i }
    while isOneOf(i, ".:,"), isDigit(at: i + 1) {
      i += 1
      while isDigit(at: i) { i += 1 }
      end = i
    }
    return end
  }

  /// Letters and digits with single inner hyphens or underscores (`well-kept`, `3-year-old`, `a_b`),
  /// each part optionally led by `d' o' l'` (`o'clock3`).
  func thingEnd(_ start: Int) -> Int? {
    func part(_ from: Int) -> Int? {
      var i = from
      if isOneOf(i, "dDoOlL"), isApostrophe(at: i + 1) || scalar(i + 1) == "\u{2018}", isAlnum(at: i + 2) {
        i += 2
      }
      guard isAlnum(at: i) else { return nil }
      while isAlnum(at: i) { i += 1 }
      return i
    }
    guard var i = part(start) else { return nil }
    while isOneOf(i, "-_\u{2010}\u{2011}"), let next = part(i + 1) { i = next }
    return i
  }

  /// ASCII letters, digits, dots and commas, then one or more hyphenated parts: `3.5well-kept`,
  /// `1,000-pound`, `st.ice-cream`.
  mutating func hyphenatedEnd(_ start: Int) -> Int? {
    guard start >= noHyphenatedBefore, isASCIIAlnum(at: start) else { return nil }
    var i = start + 1
    while isASCIIAlnum(at: i) || isOneOf(i, ".,") { i += 1 }
    // A start later in this run reaches the same i: no match from there either (`a,a,a,…` stays linear).
    noHyphenatedBefore = i
    var end: Int? = nil
    while scalar(i) == "-", isASCIIAlnum(at: i + 1) {
      i += 1
      while isASCIIAlnum(at: i) { i += 1 }
      end = i
    }
    if end != nil { noHyphenatedBefore = 0 }
    return end
  }

  /// Words joined by single dots (`dog.cat`, `e.g`, `u.s.a`), with the final period when every part
  /// is one letter (`u.s.a.`, an acronym).
  func dottedEnd(_ start: Int) -> Int? {
    guard isLetter(at: start) else { return nil }
    var i = start
    var allSingle = true
    var parts = 0
    while true {
      // Each part starts with a letter; later parts may go on with digits (`dog.cat3rd`).
      let partStart = i
      while parts == 0 ? isLetter(at: i) : (isAlnum(at: i) || i == partStart) { i += 1 }
      if i - partStart != 1 { allSingle = false }
      parts += 1
      guard scalar(i) == ".", isLetter(at: i + 1) else { break }
      i += 1
    }
    guard parts > 1 else { return nil }
    if allSingle && scalar(i) == "." { return i + 1 }
    return i
  }

  /// ASCII words or numbers joined by up to two slashes, each part with up to two hyphenated
  /// letter tails: `a/b/c`, `1/2`, `w/well-kept`, `mid-air/km`.
  func slashEnd(_ start: Int) -> Int? {
    func asciiLetter(_ index: Int) -> Bool {
      scalar(index).map { $0.isASCII && PTBScanner.isLetter($0) } ?? false
    }
    func part(_ from: Int) -> Int? {
      guard isASCIIAlnum(at: from) else { return nil }
      var i = from
      while isASCIIAlnum(at: i) { i += 1 }
      var tails = 0
      while tails < 2, scalar(i) == "-", asciiLetter(i + 1) {
        i += 1
        while asciiLetter(i) { i += 1 }
        tails += 1
      }
      return i
    }
    guard var i = part(start) else { return nil }
    var slashes = 0
    while slashes < 2, scalar(i) == "/", let next = part(i + 1) {
      i = next
      slashes += 1
    }
    return slashes > 0 ? i : nil
  }

  /// Capitals joined by `&`: `AT&T`, `S&P`; and `C++`.
  func ampersandEnd(_ start: Int) -> Int? {
    func capital(_ index: Int) -> Bool { scalar(index).map { $0 >= "A" && $0 <= "Z" } ?? false }
    if isLetter(at: start), scalar(start + 1) == "+", scalar(start + 2) == "+", !isAlnum(at: start + 3) {
      return start + 3
    }
    guard capital(start) else { return nil }
    var i = start
    while capital(i) { i += 1 }
    var joined = false
    while scalar(i) == "&", capital(i + 1) {
      i += 1
      while capital(i) { i += 1 }
      joined = true
    }
    return joined ? i : nil
  }

  /// `1 1/2`: a whole number, one space, a fraction (the space becomes a non-breaking one).
  func mixedFractionEnd(_ start: Int) -> Int? {
    var i = start
    while isDigit(at: i) && i - start < 4 { i += 1 }
    guard i > start, !isAlnum(at: i), scalar(i) == " " || scalar(i) == "\u{A0}" else { return nil }
    i += 1
    let numerator = i
    while isDigit(at: i) && i - numerator < 4 { i += 1 }
    guard i > numerator, scalar(i) == "/" else { return nil }
    i += 1
    let denominator = i
    while isDigit(at: i) && i - denominator < 4 { i += 1 }
    guard i > denominator, !isAlnum(at: i) else { return nil }
    return i
  }

  /// American phone numbers: `(555) 123-4567`, `555-123-4567`.
  func phoneEnd(_ start: Int) -> Int? {
    func digits(_ from: Int, _ count: Int) -> Bool { (from..<from + count).allSatisfy { isDigit(at: $0) } }
    var i = start
    if scalar(i) == "(" {
      guard digits(i + 1, 3), scalar(i + 4) == ")" else { return nil }
      i += 5
      if isOneOf(i, " \u{A0}") { i += 1 }
    } else {
      guard digits(i, 3), isOneOf(i + 3, "- \u{A0}.") else { return nil }
      i += 4
    }
    guard digits(i, 3), isOneOf(i + 3, "- \u{A0}."), digits(i + 4, 4), !isDigit(at: i + 8) else { return nil }
    return i + 8
  }

  /// `name@host.tld`.
  mutating func emailEnd(_ start: Int) -> Int? {
    guard start >= noEmailBefore, isASCIIAlnum(at: start) else { return nil }
    var i = start
    while let s = scalar(i), !PTBScanner.isSpace(s), !"\"<>|()@".unicodeScalars.contains(s) { i += 1 }
    noEmailBefore = i  // as for hyphenatedEnd; undone below when there is an address
    guard scalar(i) == "@" else { return nil }
    i += 1
    var end: Int? = nil
    while true {
      let label = i
      while let s = scalar(i), !PTBScanner.isSpace(s), !"\"<>|().@".unicodeScalars.contains(s) { i += 1 }
      guard i > label, scalar(i) == "." else { break }
      i += 1
      var letters = 0
      while let s = scalar(i + letters), s.isASCII, PTBScanner.isLetter(s) { letters += 1 }
      if letters >= 2 && letters <= 4 { end = i + letters }
    }
    if end != nil { noEmailBefore = 0 }
    return end
  }

  /// `http://…`, `https://…`, `www.…`: up to the next space, without trailing punctuation.
  func urlEnd(_ start: Int) -> Int? {
    guard isOneOf(start, "hHwW") else { return nil }
    let head = lowered(start, min(text.count, start + 8))
    guard head.hasPrefix("http://") || head.hasPrefix("https://") || head.hasPrefix("www.") else {
      return nil
    }
    var end = start
    while end < text.count && !PTBScanner.isSpace(text[end])
      && !"\"<>|(){}".unicodeScalars.contains(text[end])
    {
      end += 1
    }
    while end > start, ".!?,;:-".unicodeScalars.contains(text[end - 1]) { end -= 1 }
    return end
  }

  /// A smiley such as `:)` `;-)` `:d` (not followed by a letter or digit).
  func smileyEnd(_ start: Int) -> Int? {
    guard isOneOf(start, ":;=") else { return nil }
    var i = start + 1
    if isOneOf(i, "-o*'") && isOneOf(i + 1, "()DPdpO\\{@|[]") { i += 1 }
    guard isOneOf(i, "()DPdpO\\{@|[]"), !isAlnum(at: i + 1) else { return nil }
    return i + 1
  }

  /// The length of a clitic `'s 'm 'd 're 've 'll` starting at the apostrophe `index`, or 0.
  func cliticLength(_ index: Int) -> Int {
    guard isApostrophe(at: index), let a = scalar(index + 1) else { return 0 }
    let b = scalar(index + 2)
    switch a {
    case "s", "S", "m", "M", "d", "D": return 2
    case "r", "R": return b == "e" || b == "E" ? 3 : 0
    case "v", "V": return b == "e" || b == "E" ? 3 : 0
    case "l", "L": return b == "l" || b == "L" ? 3 : 0
    default: return 0
    }
  }

  // MARK: The scan

  mutating func run() {
    while position < text.count {
      let s = text[position]
      if s.isASCII && PTBScanner.isAlnum(s) {
        scanWord()
      } else if PTBScanner.isSpace(s) || s.value > 0xFFFF
        || (s.isASCII ? s.value < 0x20 || s.value == 0x7F : s.properties.generalCategory == .control)
      {
        position += 1  // spaces, and characters the lexer cannot tokenise (deleted)
      } else if PTBScanner.isAlnum(s) || (isOneOf(position, "-+.:,") && numberEnd(position) != nil) {
        scanWord()
      } else if PTBScanner.isApostrophe(s) {
        scanApostrophe()
      } else {
        scanSymbol()
      }
    }
  }

  /// A word, number or other letter/digit token starting at `position`.
  mutating func scanWord() {
    let start = position
    if let end = urlEnd(start) ?? (hasAt ? emailEnd(start) : nil) ?? phoneEnd(start) {
      emit(start, end)
      position = end
      return
    }
    if let end = mixedFractionEnd(start) {
      emit(string(start, end).replacing(" ", with: "\u{A0}"))
      position = end
      return
    }
    // Longest match; ties go to the earlier shape in this list.
    var best = start
    var shape = -1
    func consider(_ end: Int?, _ index: Int) {
      if let end, end > best {
        best = end
        shape = index
      }
    }
    consider(numberEnd(start), 0)
    consider(thingEnd(start), 1)
    consider(dottedEnd(start), 2)
    consider(slashEnd(start), 3)
    consider(ampersandEnd(start), 4)
    consider(hyphenatedEnd(start), 5)
    var end = best
    let lettersOnly = (start..<end).allSatisfy { PTBScanner.isLetter(text[$0]) }
    if shape == 1 && lettersOnly {
      let word = lowered(start, end)
      // cannot → can not, gonna → gon na, ….
      if let cut = PTBTokenizer.splitWords[word] {
        emit(start, start + cut)
        position = start + cut
        return
      }
      if isApostrophe(at: end) || scalar(end) == "\u{2018}" {
        let letter = text[end - 1]
        // n't: `can't` → `ca n't`, `don't` → `do n't`; the `n'…` part is scanned next.
        if end - start >= 2, letter == "n" || letter == "N", isOneOf(end + 1, "tT"),
          (start..<end).allSatisfy({ text[$0].isASCII })
        {
          emit(start, end - 1)
          position = end - 1
          return
        }
        // `y'all` → `y' all`.
        if end - start == 1, letter == "y" || letter == "Y", isLetter(at: end + 1) {
          emit(start, end + 1)
          position = end + 1
          return
        }
        // Apostrophe words that stay whole: `o'clock` (one letter, then two or more), `ma'am`.
        var after = end + 1
        while isLetter(at: after) { after += 1 }
        let tail = after - (end + 1)
        let oneLetter = end - start == 1 && !isOneOf(start, "iIyY") && tail >= 2
        let vowelJoin =
          end - start >= 2 && PTBScanner.vowels.contains(letter) && tail >= 1
          && (isOneOf(end + 1, "aeiou") || isOneOf(end + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        let clitic = cliticLength(end)
        if (oneLetter && (clitic == 0 || clitic < tail + 1)) || (vowelJoin && clitic == 0) {
          end = after
        } else if letter == "n" || letter == "N", end - start == 1, isOneOf(end + 1, "tT") {
          emit("n't")  // a lone `n't`, whatever its apostrophe
          position = end + 2
          return
        }
      }
    }
    // A period that belongs to the token: one letter (`a.`), an abbreviation (`mr.`), or already
    // inside an acronym (`u.s.`).
    if scalar(end) == ".", !isLetter(at: end + 1) {
      let word = lowered(start, end)
      var next = end + 1
      while isSpace(at: next) { next += 1 }
      let nextIsDigit = isDigit(at: next) && next - end <= 2  // `No. 5`, not `no.  5`
      // A capital after the period starts a new sentence (not `A.`, itself an initial); the end of
      // the caption counts as one, as the next caption of a COCO file usually starts with a capital.
      let sentenceFollows =
        next >= text.count || (isOneOf(next, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") && scalar(next + 1) != ".")
      if isDigit(at: end + 1) {
        // `etc.3` is `etc. 3`, `a.5` is `a. 5`, but `dog.5` is `dog .5`.
        if lettersOnly
          && (end - start == 1 || PTBTokenizer.abbreviations.contains(word)
            || PTBTokenizer.numberAbbreviations.contains(word))
        {
          end += 1
        }
      } else if lettersOnly && isOneOf(end + 1, ",;:") {
        end += 1  // a word keeps its period before a comma, colon or semicolon: `sits.,`
      } else if end - start == 1 && text[start].isASCII && PTBScanner.isLetter(text[start]) {
        if !sentenceFollows { end += 1 }
      } else if PTBTokenizer.abbreviations.contains(word)
        || PTBTokenizer.capitalisedAbbreviations.contains(string(start, end))
        || (nextIsDigit && PTBTokenizer.numberAbbreviations.contains(word))
      {
        end += 1
      }
    }
    emit(start, end)
    position = end
  }

  /// An apostrophe: a clitic (`'s`), a shortened word (`'90s`, `'em`), else a quote (removed).
  mutating func scanApostrophe() {
    let start = position
    var end = start + 1
    while isLetter(at: end) { end += 1 }
    let word = lowered(start + 1, end)
    let clitic = cliticLength(start)
    // After ASCII ' a clitic needs a non-letter after it (`it'sdog` is `it sdog`); after ’ it does not.
    let asciiLetterFollows = scalar(start + clitic).map { $0.isASCII && PTBScanner.isLetter($0) } ?? false
    if clitic > 0 && (!asciiLetterFollows || text[start] != "'") {
      emit("'" + lowered(start + 1, start + clitic))
      position = start + clitic
      return
    }
    if ["em", "cause", "til", "till", "twas"].contains(word) {
      emit(start, end)
      position = end
      return
    }
    if word == "tis" {
      emit(start, start + 2)
      position = start + 2
      return
    }
    // 'n' (rock 'n' roll)
    if isOneOf(start + 1, "nN") {
      if isApostrophe(at: start + 2) {
        emit(start, start + 3)
        position = start + 3
        return
      }
      if !isAlnum(at: start + 2) {
        emit(start, start + 2)
        position = start + 2
        return
      }
    }
    // '90s, '80s
    if isDigit(at: start + 1) && isDigit(at: start + 2) {
      if isOneOf(start + 3, "sS") {
        emit(start, start + 4)
        position = start + 4
        return
      }
      if start + 3 >= text.count || isSpace(at: start + 3) {
        emit(start, start + 3)
        position = start + 3
        return
      }
    }
    if text[start] == "\u{2019}" || text[start] == "\u{92}" {
      scanSymbol()  // a curly closing quote, possibly paired with the next one
      return
    }
    position = start + 1  // a quote: removed
  }

  /// Punctuation and symbols.
  mutating func scanSymbol() {
    let start = position
    let s = text[start]
    func run(of characters: String) -> Int {
      var end = start
      while let c = scalar(end), characters.unicodeScalars.contains(c) { end += 1 }
      return end
    }
    if let first = PTBScanner.quoteSpelling(s) {
      // One or two quote characters make one token: `“‘` → "```" (kept), `‘‘` → "``" (removed).
      if let second = scalar(start + 1).flatMap(PTBScanner.quoteSpelling) {
        emit(first + second)
        position += 2
      } else {
        emit(first)
        position += 1
      }
      return
    }
    if let end = smileyEnd(start) ?? phoneEnd(start) {
      emit(
        lowered(start, end).replacing("(", with: "-LRB-").replacing(
          ")", with: "-RRB-"
        )
        .replacing(" ", with: "\u{A0}"))
      position = end
      return
    }
    switch s {
    case "(": emit("-LRB-"); position += 1
    case ")": emit("-RRB-"); position += 1
    case "[": emit("-LSB-"); position += 1
    case "]": emit("-RSB-"); position += 1
    case "{": emit("-LCB-"); position += 1
    case "}": emit("-RCB-"); position += 1
    case "\"":
      position += 1  // double quote: removed
    case "-":
      // Already escaped brackets stay whole: `-lrb-` (so tokenising tokens again changes nothing).
      if start + 5 <= text.count, scalar(start + 4) == "-",
        ["lrb", "rrb", "lsb", "rsb", "lcb", "rcb"].contains(lowered(start + 1, start + 4))
      {
        emit(start, start + 5)
        position = start + 5
        return
      }
      let end = run(of: "-")
      let length = end - start
      emit(length >= 3 && length <= 4 ? "--" : string(start, end))
      position = end
    case "\u{2013}", "\u{2014}", "\u{2015}", "\u{96}", "\u{97}":
      position += 1  // dashes become "--": removed
    case ".", "\u{2026}", "\u{85}":
      // Dots and ellipses: removed. Three to five dots are one token; of one or two, a dot before
      // a digit starts a number (`..5` is `. .5`).
      guard s == "." else {
        position += 1
        return
      }
      let end = run(of: ".")
      if end - start >= 3 {
        position = start + min(end - start, 5)
      } else {
        position = isDigit(at: end) ? max(start + 1, end - 1) : end
      }
    case "?", "!":
      let end = run(of: "?!")
      emit(start, end)
      position = end
    case ",", ";", ":":
      position += 1
    case "*":
      let end = run(of: "*")
      emit(start, end)
      position = end
    case "£": emit("#"); position += 1
    case "€", "\u{A4}", "\u{20A0}", "\u{80}": emit("$"); position += 1
    case "\u{A2}": emit("cents"); position += 1
    case "½": emit("1/2"); position += 1
    case "¼": emit("1/4"); position += 1
    case "¾": emit("3/4"); position += 1
    case "&":
      let entity = lowered(start, min(text.count, start + 5))
      if entity.hasPrefix("&amp;") {
        emit("&")
        position += 5
      } else if entity.hasPrefix("&lt;") {
        emit("<")
        position += 4
      } else if entity.hasPrefix("&gt;") {
        emit(">")
        position += 4
      } else {
        emit("&")
        position += 1
      }
    case "<":
      // SGML-like tags stay whole: <b>, </b>, <br/>.
      var end = start + 1
      if scalar(end) == "/" { end += 1 }
      if let c = scalar(end), (c.isASCII && PTBScanner.isLetter(c)) || c == "!" {
        while let c = scalar(end), c != ">" { end += 1 }
        if scalar(end) == ">" {
          emit(lowered(start, end + 1).replacing(" ", with: "\u{A0}"))
          position = end + 1
          return
        }
      }
      emit("<")
      position += 1
    case "@", "#":
      // @user and #tag stay whole; a lone # (before a number) is its own token.
      var end = start + 1
      if isOneOf(end, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
        while isASCIIAlnum(at: end) || scalar(end) == "_" { end += 1 }
      } else {
        end = run(of: String(Character(s)))
      }
      emit(start, end)
      position = end
    case "_":
      let end = run(of: "_")
      emit(start, end)
      position = end
    default:
      emit(String(Character(s)))
      position += 1
    }
  }
}
