import CShims

/// 8-bit RGB to PNG bytes (libpng, no interlace).
public enum PNGWriter {
  public static func encode(_ image: RGBImage) throws -> [UInt8] {
    var encoded = caption_encoded()
    image.pixels.withUnsafeBufferPointer {
      caption_png_encode($0.baseAddress, Int32(image.width), Int32(image.height), &encoded)
    }
    return try take(&encoded, what: "PNG")
  }
}

/// 8-bit RGB to baseline JPEG bytes (libjpeg, 4:2:0 chroma) at `quality` 1...100.
public enum JPEGWriter {
  public static func encode(_ image: RGBImage, quality: Int = 92) throws -> [UInt8] {
    var encoded = caption_encoded()
    image.pixels.withUnsafeBufferPointer {
      caption_jpeg_encode(
        $0.baseAddress, Int32(image.width), Int32(image.height), Int32(clamping: quality), &encoded)
    }
    return try take(&encoded, what: "JPEG")
  }
}

/// 8-bit RGB to binary PPM (`P6`, maxval 255).
public enum PPMWriter {
  public static func encode(_ image: RGBImage) -> [UInt8] {
    Array("P6\n\(image.width) \(image.height)\n255\n".utf8) + image.pixels
  }
}

/// The encoded bytes, or the encoder's error; frees the C buffer either way.
private func take(_ encoded: inout caption_encoded, what: String) throws -> [UInt8] {
  defer { caption_encoded_free(&encoded) }
  guard encoded.error == 0, let bytes = encoded.bytes else {
    let message = withUnsafeBytes(of: &encoded.message) { raw in
      let all = raw.bindMemory(to: UInt8.self)
      return String(decoding: all[..<(all.firstIndex(of: 0) ?? all.count)], as: UTF8.self)
    }
    throw CaptionError(.invalidArgument, path: what, "cannot encode \(what): \(message)")
  }
  return [UInt8](UnsafeBufferPointer(start: bytes, count: encoded.length))
}
