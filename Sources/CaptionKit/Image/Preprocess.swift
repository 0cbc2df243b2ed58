/// SPEC §4: from a decoded image to exactly what the network sees.
///
/// 1. scale so the shorter side is S (the longer side becomes floor(L·S/s + 0.5));
/// 2. resample per axis: area averaging when shrinking, bilinear with pixel centres at half-integers
///    when enlarging; round half up to 8 bits;
/// 3. centre-crop to S×S at floor((L′ − S)/2) on the longer axis;
/// 4. scale to [0, 1] and normalise per channel (`normalize`), CHW.
///
/// The resampling is done in exact integer arithmetic (every weight is a rational with a known
/// denominator), so "round half up" is exact and the result does not depend on the axis order.
public enum Preprocess {
  /// ImageNet's statistics, the default normalisation (SPEC §4).
  public static let imagenetMean: [Float] = [0.485, 0.456, 0.406]
  public static let imagenetStd: [Float] = [0.229, 0.224, 0.225]

  /// Decodes `path` at the DCT scale for 2·size (JPEG), applies EXIF orientation, resizes and
  /// crops to size×size: the 8-bit pixels the network sees.
  public static func load(path: String, size: Int, decoder: ImageDecoder = ImageDecoder()) throws -> RGBImage
  {
    let image = try decoder.decode(path: path, minimumShorterSide: 2 * size)
    return resizeAndCrop(image, size: size)
  }

  /// The same from bytes in memory (`path` names them in errors).
  public static func load(bytes: [UInt8], path: String, size: Int, decoder: ImageDecoder = ImageDecoder())
    throws
    -> RGBImage
  {
    let image = try decoder.decode(bytes: bytes, path: path, minimumShorterSide: 2 * size)
    return resizeAndCrop(image, size: size)
  }

  /// The size after step 1: the shorter side becomes `size`, the longer floor(L·S/s + 0.5).
  public static func scaledSize(width: Int, height: Int, size: Int) -> (width: Int, height: Int) {
    let shorter = min(width, height), longer = max(width, height)
    // floor(L·S/s + 0.5) = floor((2·L·S + s) / 2s), exact in integers.
    let scaledLonger = (2 * longer * size + shorter) / (2 * shorter)
    return width <= height ? (size, scaledLonger) : (scaledLonger, size)
  }

  /// Steps 1–3: resize so the shorter side is `size`, then centre-crop to size×size.
  /// An image that is already size×size is returned unresampled.
  public static func resizeAndCrop(_ image: RGBImage, size: Int) -> RGBImage {
    precondition(size > 0, "Preprocess.resizeAndCrop: size must be positive")
    if image.width == size && image.height == size { return image }
    let scaled = scaledSize(width: image.width, height: image.height, size: size)
    let cropX = (scaled.width - size) / 2, cropY = (scaled.height - size) / 2
    let columns = AxisWeights(input: image.width, output: scaled.width, first: cropX, count: size)
    let rows = AxisWeights(input: image.height, output: scaled.height, first: cropY, count: size)
    return resample(image, columns: columns, rows: rows)
  }

  /// Resizes to exactly width×height (no crop), with the same per-axis rules.
  public static func resize(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
    precondition(width > 0 && height > 0, "Preprocess.resize: size must be positive")
    if image.width == width && image.height == height { return image }
    let columns = AxisWeights(input: image.width, output: width, first: 0, count: width)
    let rows = AxisWeights(input: image.height, output: height, first: 0, count: height)
    return resample(image, columns: columns, rows: rows)
  }

  /// Writes `image` as CHW floats, (pixel/255 − mean[c]) / std[c]: width·height·3 values.
  public static func normalize(
    _ image: RGBImage, mean: [Float] = imagenetMean, std: [Float] = imagenetStd,
    into output: UnsafeMutablePointer<Float>
  ) {
    image.pixels.withUnsafeBufferPointer { pixels in
      guard let first = pixels.baseAddress else { return }
      normalize(pixels: first, count: image.width * image.height, mean: mean, std: std, into: output)
    }
  }

  /// The normalisation of every image the network sees, in training and in inference: `count` RGB
  /// pixels (HWC bytes) into three planes of `count` floats, [3, count]: (pixel/255 − mean[c]) / std[c].
  public static func normalize(
    pixels: UnsafePointer<UInt8>, count plane: Int, mean: [Float] = imagenetMean,
    std: [Float] = imagenetStd, into output: UnsafeMutablePointer<Float>
  ) {
    precondition(mean.count == 3 && std.count == 3, "Preprocess.normalize: mean and std need 3 values")
    // out = p·scale + shift with scale = 1/(255·std), shift = −mean/std.
    let scale = (0..<3).map { 1 / (255 * std[$0]) }
    let shift = (0..<3).map { -mean[$0] / std[$0] }
    for c in 0..<3 {
      let out = output + c * plane
      let s = scale[c], b = shift[c]
      for i in 0..<plane { out[i] = Float(pixels[3 * i + c]) * s + b }
    }
  }

  /// One image as a [3, H, W] tensor.
  public static func tensor(_ image: RGBImage, mean: [Float] = imagenetMean, std: [Float] = imagenetStd)
    -> Tensor
  {
    let result = Tensor(zeros: [3, image.height, image.width])
    normalize(image, mean: mean, std: std, into: result.pointer)
    return result
  }

  /// Images of one size as an NCHW batch [N, 3, H, W].
  public static func batch(_ images: [RGBImage], mean: [Float] = imagenetMean, std: [Float] = imagenetStd)
    -> Tensor
  {
    precondition(!images.isEmpty, "Preprocess.batch: no images")
    let height = images[0].height, width = images[0].width
    let result = Tensor(zeros: [images.count, 3, height, width])
    for (n, image) in images.enumerated() {
      precondition(image.width == width && image.height == height, "Preprocess.batch: images differ in size")
      normalize(image, mean: mean, std: std, into: result.pointer + n * 3 * height * width)
    }
    return result
  }

  /// The two passes: columns over the needed rows into integer sums, then rows; one rounding.
  static func resample(_ image: RGBImage, columns: AxisWeights, rows: AxisWeights) -> RGBImage {
    let inWidth = image.width
    let outWidth = columns.count, outHeight = rows.count
    // Only the input rows the vertical pass reads are resampled horizontally.
    let firstRow = rows.start.first!, lastRow = rows.start.last! + rows.taps.last! - 1
    let neededRows = lastRow - firstRow + 1
    var horizontal = [Int64](repeating: 0, count: neededRows * outWidth * 3)  // [rows, outWidth, 3]
    image.pixels.withUnsafeBufferPointer { pixels in
      horizontal.withUnsafeMutableBufferPointer { sums in
        for r in 0..<neededRows {
          let inRow = pixels.baseAddress! + (firstRow + r) * inWidth * 3
          let outRow = sums.baseAddress! + r * outWidth * 3
          for j in 0..<outWidth {
            var red: Int64 = 0, green: Int64 = 0, blue: Int64 = 0
            let start = columns.start[j], offset = columns.offset[j]
            for k in 0..<columns.taps[j] {
              let w = columns.weights[offset + k]
              let p = inRow + (start + k) * 3
              red += w * Int64(p[0])
              green += w * Int64(p[1])
              blue += w * Int64(p[2])
            }
            outRow[3 * j] = red
            outRow[3 * j + 1] = green
            outRow[3 * j + 2] = blue
          }
        }
      }
    }
    // value = Σ / D with D = Dx·Dy; round half up: floor((2Σ + D) / 2D).
    let denominator = columns.denominator * rows.denominator
    var output = [UInt8](repeating: 0, count: outWidth * outHeight * 3)
    horizontal.withUnsafeBufferPointer { sums in
      output.withUnsafeMutableBufferPointer { out in
        let rowLength = outWidth * 3
        for i in 0..<outHeight {
          let start = rows.start[i] - firstRow, offset = rows.offset[i]
          let outRow = out.baseAddress! + i * rowLength
          for x in 0..<rowLength {
            var total: Int64 = 0
            for k in 0..<rows.taps[i] {
              total += rows.weights[offset + k] * sums[(start + k) * rowLength + x]
            }
            outRow[x] = UInt8(truncatingIfNeeded: (2 * total + denominator) / (2 * denominator))
          }
        }
      }
    }
    return RGBImage(width: outWidth, height: outHeight, pixels: output)
  }
}

/// The resampling weights of one axis, from `input` pixels to `output`, for the outputs
/// first..<first+count: output j reads `taps[j]` inputs from `start[j]` with integer weights
/// `weights[offset[j]...]`, the value being Σ w·p / `denominator`.
struct AxisWeights {
  var start: [Int] = []
  var taps: [Int] = []
  var offset: [Int] = []
  var weights: [Int64] = []
  var denominator: Int64 = 1
  var count: Int { start.count }

  init(input n: Int, output m: Int, first: Int, count: Int) {
    precondition(n > 0 && m > 0 && first >= 0 && first + count <= m)
    if m == n {
      for j in first..<first + count { append(start: j, weights: [1]) }
    } else if m < n {
      // Area averaging. In units of 1/m: output j covers [j·n, (j+1)·n), input i covers
      // [i·m, (i+1)·m); the weight is the overlap, and the weights sum to n.
      denominator = Int64(n)
      for j in first..<first + count {
        let low = j * n, high = (j + 1) * n
        let firstInput = low / m, lastInput = (high - 1) / m
        var ws: [Int64] = []
        for i in firstInput...lastInput {
          ws.append(Int64(min((i + 1) * m, high) - max(i * m, low)))
        }
        append(start: firstInput, weights: ws)
      }
    } else {
      // Bilinear with half-integer centres: output j samples input x = (j + 0.5)·n/m − 0.5,
      // clamped to [0, n−1]. In units of 1/2m: x·2m = (2j+1)·n − m.
      let twoM = 2 * m
      denominator = Int64(twoM)
      for j in first..<first + count {
        let x = (2 * j + 1) * n - m
        if x <= 0 {
          append(start: 0, weights: [Int64(twoM)])
        } else if x >= (n - 1) * twoM {
          append(start: n - 1, weights: [Int64(twoM)])
        } else {
          let i0 = x / twoM, fraction = x - i0 * twoM
          append(start: i0, weights: [Int64(twoM - fraction), Int64(fraction)])
        }
      }
    }
  }

  private mutating func append(start s: Int, weights ws: [Int64]) {
    start.append(s)
    taps.append(ws.count)
    offset.append(weights.count)
    weights.append(contentsOf: ws)
  }
}
