/// EXIF orientation: reading the tag from a JPEG's APP1 block and turning an image upright.
public enum ExifOrientation {
  /// The orientation tag (1...8) of an EXIF block: the TIFF structure after `Exif\0\0`,
  /// either byte order. Anything missing, out of bounds or out of range gives 1 (as stored).
  public static func parse(tiff: UnsafeRawBufferPointer) -> Int {
    let count = tiff.count
    guard count >= 8 else { return 1 }
    let littleEndian: Bool
    switch (tiff[0], tiff[1]) {
    case (0x49, 0x49): littleEndian = true  // "II"
    case (0x4D, 0x4D): littleEndian = false  // "MM"
    default: return 1
    }
    func u16(_ at: Int) -> Int? {
      guard at >= 0, at + 2 <= count else { return nil }
      let a = Int(tiff[at]), b = Int(tiff[at + 1])
      return littleEndian ? a | b << 8 : a << 8 | b
    }
    func u32(_ at: Int) -> Int? {
      guard let low = u16(littleEndian ? at : at + 2), let high = u16(littleEndian ? at + 2 : at)
      else { return nil }
      return high << 16 | low
    }
    guard u16(2) == 42, let ifd0 = u32(4), let entries = u16(ifd0) else { return 1 }
    // IFD0: a 2-byte count, then 12-byte entries (tag, type, count, value or offset).
    for index in 0..<entries {
      let entry = ifd0 + 2 + 12 * index
      guard let tag = u16(entry) else { return 1 }
      guard tag == 0x0112 else { continue }
      // Orientation: type SHORT (3), count 1, the value in the first two bytes of the field.
      guard u16(entry + 2) == 3, u32(entry + 4) == 1, let value = u16(entry + 8), (1...8).contains(value)
      else { return 1 }
      return value
    }
    return 1
  }

  /// `image` as it should be seen under EXIF `orientation` (1...8; anything else leaves it).
  ///
  /// Output pixel (x, y) reads input pixel (sx, sy) of the W×H input: 1 (x, y); 2 (W−1−x, y);
  /// 3 (W−1−x, H−1−y); 4 (x, H−1−y); and with width and height swapped: 5 transpose (y, x);
  /// 6 rotate 90° clockwise (y, H−1−x); 7 transverse (W−1−y, H−1−x); 8 rotate 90° anticlockwise
  /// (W−1−y, x). As a pixel index sy·W + sx that is start + x·stepX + y·stepY.
  public static func apply(_ orientation: Int, to image: RGBImage) -> RGBImage {
    guard (2...8).contains(orientation) else { return image }
    let w = image.width, h = image.height
    let (start, stepX, stepY): (Int, Int, Int)
    switch orientation {
    case 2: (start, stepX, stepY) = (w - 1, -1, w)
    case 3: (start, stepX, stepY) = ((h - 1) * w + w - 1, -1, -w)
    case 4: (start, stepX, stepY) = ((h - 1) * w, 1, -w)
    case 5: (start, stepX, stepY) = (0, w, 1)
    case 6: (start, stepX, stepY) = ((h - 1) * w, -w, 1)
    case 7: (start, stepX, stepY) = ((h - 1) * w + w - 1, -w, -1)
    default: (start, stepX, stepY) = (w - 1, w, -1)  // 8
    }
    let swaps = orientation >= 5
    let outWidth = swaps ? h : w, outHeight = swaps ? w : h
    var output = [UInt8](repeating: 0, count: w * h * 3)
    image.pixels.withUnsafeBufferPointer { input in
      output.withUnsafeMutableBufferPointer { out in
        var to = 0
        for y in 0..<outHeight {
          var from = start + y * stepY
          for _ in 0..<outWidth {
            out[to] = input[3 * from]
            out[to + 1] = input[3 * from + 1]
            out[to + 2] = input[3 * from + 2]
            to += 3
            from += stepX
          }
        }
      }
    }
    return RGBImage(width: outWidth, height: outHeight, pixels: output)
  }
}
