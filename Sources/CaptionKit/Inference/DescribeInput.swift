import FoundationEssentials
import Glibc

/// The image list of `caption describe IMAGE...` (SPEC §2).
public enum DescribeInput {
  /// The file extensions taken from a directory, compared case-insensitively.
  public static let imageExtensions: Set<String> = ["jpg", "jpeg", "png"]

  /// The images named by `arguments`, in argument order: a directory expands to the images directly
  /// inside it (files with a .jpg/.jpeg/.png extension, any case, not hidden ones, sorted by name);
  /// `-` reads paths from `readStdin()`, one per line (LF or CRLF; blank lines ignored),
  /// each expanded in turn like an argument; any other path is returned as it is, even when it does
  /// not exist or holds a NUL byte (its error is reported with the image's caption, later).
  /// Throws when a directory cannot be listed, when a directory holds no images, and when `-` reads
  /// no paths (nothing to caption is an error, not an empty output).
  public static func expand(arguments: [String], readStdin: () -> String?) throws -> [String] {
    var paths: [String] = []
    for argument in arguments {
      if argument == "-" {
        let text = readStdin() ?? ""
        var named = 0
        // "\r\n" is one Character in Swift: split on any line break
        for line in text.split(omittingEmptySubsequences: true, whereSeparator: \.isNewline) {
          if line.allSatisfy({ $0.isWhitespace }) { continue }
          paths += try expandPath(String(line))
          named += 1
        }
        if named == 0 {
          throw CaptionError(.invalidArgument, path: "-", "no images found (standard input names no files)")
        }
      } else {
        paths += try expandPath(argument)
      }
    }
    return paths
  }

  /// All of standard input as text (invalid UTF-8 replaced), for `expand`'s `readStdin`.
  public static func standardInputText() -> String? {
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
      let count = read(0, &chunk, chunk.count)
      if count < 0 && errno == EINTR { continue }
      if count <= 0 { break }
      bytes += chunk[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  /// True when `arguments` is exactly one file (not a directory, not `-`): then `describe` prints
  /// the bare caption.
  public static func namesSingleFile(_ arguments: [String]) -> Bool {
    guard arguments.count == 1, arguments[0] != "-" else { return false }
    var isDirectory = false
    let exists = FileManager.default.fileExists(atPath: arguments[0], isDirectory: &isDirectory)
    return !(exists && isDirectory)
  }

  /// Whether a file name has one of `imageExtensions`.
  public static func hasImageExtension(_ name: String) -> Bool {
    guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return false }
    return imageExtensions.contains(name[name.index(after: dot)...].lowercased())
  }

  private static func expandPath(_ path: String) throws -> [String] {
    // A NUL byte would cut the name short for the system: the image's load refuses it.
    if path.utf8.contains(0) { return [path] }
    var isDirectory = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory),
      isDirectory
    else { return [path] }
    let names: [String]
    do {
      names = try FileManager.default.contentsOfDirectory(atPath: path)
    } catch {
      throw CaptionError(.unreadable, path: path, "cannot list the directory")
    }
    let prefix = path.hasSuffix("/") ? path : path + "/"
    var images: [String] = []
    for name in names.sorted() where !name.hasPrefix(".") && hasImageExtension(name) {
      var entryIsDirectory = false
      let full = prefix + name
      // a directory called x.png is not an image; a dangling link is kept and fails later
      if FileManager.default.fileExists(atPath: full, isDirectory: &entryIsDirectory),
        entryIsDirectory
      {
        continue
      }
      images.append(full)
    }
    if images.isEmpty {
      throw CaptionError(.invalidArgument, path: path, "no images found (no .jpg, .jpeg or .png files in it)")
    }
    return images
  }
}
