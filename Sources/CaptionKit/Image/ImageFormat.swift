/// An image file format, told from the first bytes of the file (never from its name).
public enum ImageFormat: Equatable, Sendable {
  case jpeg
  case png
  /// Recognised but not decoded (GIF, BMP, WebP, TIFF ...), with its name for the error message.
  case other(String)
  /// Nothing recognisable.
  case unknown

  /// The format the magic numbers at the start of `bytes` announce.
  public static func detect<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> ImageFormat {
    let head = Array(bytes.prefix(12))
    func starts(_ magic: [UInt8]) -> Bool {
      head.count >= magic.count && Array(head.prefix(magic.count)) == magic
    }
    if starts([0xFF, 0xD8, 0xFF]) { return .jpeg }
    if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
    if starts(Array("GIF8".utf8)) { return .other("GIF") }
    if starts(Array("BM".utf8)) { return .other("BMP") }
    if starts(Array("RIFF".utf8)) && head.count >= 12 && Array(head[8..<12]) == Array("WEBP".utf8) {
      return .other("WebP")
    }
    if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return .other("TIFF") }
    if head.count >= 12 && Array(head[4..<8]) == Array("ftyp".utf8) { return .other("HEIF/AVIF/MP4") }
    if starts([0xFF, 0x0A]) || starts([0x00, 0x00, 0x00, 0x0C, 0x4A, 0x58, 0x4C, 0x20]) {
      return .other("JPEG XL")
    }
    if starts(Array("qoif".utf8)) { return .other("QOI") }
    return .unknown
  }
}
