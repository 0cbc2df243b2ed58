import CShims
import FoundationEssentials
import Glibc

/// Decodes JPEG and PNG files to 8-bit RGB as SPEC §4 fixes (grayscale replicated, palettes
/// expanded, alpha dropped, 16-bit scaled, CMYK/YCCK converted, a JPEG's EXIF orientation applied).
///
/// Every failure is a `CaptionError` naming the file: `.unreadable` (cannot open or read),
/// `.notAFile` (a directory or device), `.unsupportedFormat` (not JPEG or PNG, or a JPEG variant the
/// system's libjpeg cannot read, such as 12-bit), `.truncated`, `.corrupt`, `.tooLarge` (the header
/// claims more than `maxPixels`; refused before any pixel buffer is allocated).
public struct ImageDecoder: Sendable {
  /// The most pixels (width × height, as the header claims) a file may have.
  public var maxPixels: Int = 64_000_000

  public init(maxPixels: Int = 64_000_000) {
    self.maxPixels = maxPixels
  }

  /// Reads and decodes the file at `path`. With `minimumShorterSide`, a JPEG is decoded at the
  /// smallest DCT scale k/8 whose shorter side is still at least that (SPEC §4: 2S); nil = full scale.
  public func decode(path: String, minimumShorterSide: Int? = nil) throws -> RGBImage {
    let bytes = try readFile(path: path)
    return try decode(bytes: bytes, path: path, minimumShorterSide: minimumShorterSide)
  }

  /// Decodes a file held in memory; `path` only names it in errors.
  public func decode(bytes: [UInt8], path: String, minimumShorterSide: Int? = nil) throws -> RGBImage {
    if bytes.isEmpty { throw CaptionError(.truncated, path: path, "empty file") }
    let format = ImageFormat.detect(bytes)
    var result = caption_image_result()
    switch format {
    case .jpeg:
      bytes.withUnsafeBufferPointer {
        caption_jpeg_decode(
          $0.baseAddress, $0.count, Int64(maxPixels), Int32(clamping: minimumShorterSide ?? 0), &result)
      }
    case .png:
      bytes.withUnsafeBufferPointer {
        caption_png_decode($0.baseAddress, $0.count, Int64(maxPixels), &result)
      }
    case .other(let name):
      throw CaptionError(
        .unsupportedFormat, path: path, "unsupported image format (\(name)); JPEG and PNG are read")
    case .unknown:
      if bytes.count < 8
        && ([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A].starts(with: bytes)
          || [0xFF, 0xD8, 0xFF].starts(with: bytes))
      {
        throw CaptionError(.truncated, path: path, "file ends within its signature")
      }
      throw CaptionError(.unsupportedFormat, path: path, "unsupported image format (not a JPEG or PNG file)")
    }
    defer { caption_image_result_free(&result) }
    if result.error != 0 {
      throw Self.error(code: result.error, message: Self.message(of: &result), format: format, path: path)
    }
    let width = Int(result.width), height = Int(result.height)
    let pixels = [UInt8](UnsafeBufferPointer(start: result.pixels, count: width * height * 3))
    var image = RGBImage(width: width, height: height, pixels: pixels)
    if format == .jpeg, let exif = result.exif {
      let orientation = ExifOrientation.parse(
        tiff: UnsafeRawBufferPointer(start: exif, count: result.exif_length))
      image = ExifOrientation.apply(orientation, to: image)
    }
    return image
  }

  /// The most bytes libpng held at once while decoding `bytes` as a PNG (the pixel buffer aside),
  /// whether or not it decoded: what tests bound for malformed files.
  static func pngLibraryPeakBytes(_ bytes: [UInt8], maxPixels: Int = 64_000_000) -> Int {
    var result = caption_image_result()
    bytes.withUnsafeBufferPointer { caption_png_decode($0.baseAddress, $0.count, Int64(maxPixels), &result) }
    defer { caption_image_result_free(&result) }
    return result.library_peak_bytes
  }

  private static func message(of result: inout caption_image_result) -> String {
    withUnsafeBytes(of: &result.message) { raw in
      let bytes = raw.bindMemory(to: UInt8.self)
      let end = bytes.firstIndex(of: 0) ?? bytes.count
      return String(decoding: bytes[..<end], as: UTF8.self)
    }
  }

  private static func error(code: Int32, message: String, format: ImageFormat, path: String) -> CaptionError {
    let name = format == .jpeg ? "JPEG" : "PNG"
    // libjpeg's own words repeat the category ("Corrupt JPEG data: ..."): keep the detail only.
    var words = message
    for prefix in ["Corrupt JPEG data: ", "Premature end of JPEG file"] where words.hasPrefix(prefix) {
      words = String(words.dropFirst(prefix.count))
    }
    let detail = words.isEmpty ? "" : ": " + words
    switch Int(code) {
    case Int(CAPTION_IMAGE_TRUNCATED):
      let reason = "truncated \(name)" + (words.isEmpty ? ": the file ends early" : detail)
      return CaptionError(.truncated, path: path, reason)
    case Int(CAPTION_IMAGE_TOO_LARGE): return CaptionError(.tooLarge, path: path, "image too large\(detail)")
    case Int(CAPTION_IMAGE_UNSUPPORTED):
      return CaptionError(
        .unsupportedFormat, path: path, message.isEmpty ? "unsupported \(name) variant" : message)
    default: return CaptionError(.corrupt, path: path, "corrupt \(name)\(detail)")
    }
  }

  /// The whole file, refusing directories, devices, FIFOs and files too big to be an image within budget.
  private func readFile(path: String) throws -> [UInt8] {
    // A compressed image is never bigger than ~8 bytes per pixel (16-bit RGBA) plus its chunks.
    try RegularFile.read(
      path, maximumBytes: min(maxPixels, Int.max >> 5) * 8 + (64 << 20), what: "an image within the limit")
  }
}
