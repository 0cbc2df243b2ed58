/// Renders one synthetic scene: 1–4 objects on a plain, gradient, noisy or textured background, with
/// anti-aliased edges (4×4 supersampling per pixel). Deterministic: every random choice is one of the
/// shapes draws (ShapesRandom.swift), positions and radii are multiples of 1/4 and 1/8 pixel,
/// blending is integer.

/// An object the renderer placed: its names, its exact colour, centre and radius in pixels.
public struct PlacedShape: Equatable, Sendable {
  public var shape: ShapeKind
  public var color: ShapeColor
  public var size: ShapeSize
  public var rgb: [Int]
  public var x: Double
  public var y: Double
  public var radius: Double
}

public enum ShapesRenderer {
  /// Subsamples per pixel side (4×4 = 16 coverage levels).
  static let subsamples = 4

  /// Draws a scene's objects: how many (1: 20%, 2: 30%, 3: 30%, 4: 20%), what and where. Objects of the
  /// same shape and colour always share their size (so captions can count them: "two red circles"),
  /// and centres keep 0.75·(r₁ + r₂) apart: objects may touch or overlap a little but stay recognisable.
  public static func placeShapes(imageSize: Int, random: inout SeededGenerator) -> [PlacedShape] {
    let roll = random.below32(10)
    let wanted = roll < 2 ? 1 : roll < 5 ? 2 : roll < 8 ? 3 : 4
    let side = Double(imageSize)
    var placed: [PlacedShape] = []
    for _ in 0..<wanted {
      var shape = random.pick(ShapeKind.allCases)
      var color = random.pick(ShapeColor.allCases)
      var size = random.pick(ShapeSize.allCases)
      if !placed.isEmpty && random.chance(0.3) {
        // A copy of an earlier object's kind: scenes with counts.
        let model = random.pick(placed)
        shape = model.shape
        color = model.color
      }
      if let twin = placed.first(where: { $0.shape == shape && $0.color == color }) { size = twin.size }
      let (r0, g0, b0) = color.base
      let j = ShapeColor.jitter
      let rgb = [r0, g0, b0].map { min(255, max(0, $0 + random.int(in: -j...j))) }
      // Radius: the size's fraction of the side, ±4%, in 1/8 pixel.
      let radius =
        (side * size.radiusFraction * (0.96 + 0.08 * random.nextUnitDouble()) * 8).rounded(.down) / 8
      for _ in 0..<60 {
        // Centre in 1/4 pixel, the whole shape inside the image with a pixel to spare.
        let low = radius + 1
        let span = side - 2 * low
        guard span > 0 else { break }
        let x = low + Double(random.below32(Int(span * 4) + 1)) / 4
        let y = low + Double(random.below32(Int(span * 4) + 1)) / 4
        let clear = placed.allSatisfy { other in
          let dx = other.x - x
          let dy = other.y - y
          let gap = 0.75 * (other.radius + radius)
          return dx * dx + dy * dy >= gap * gap
        }
        if clear {
          placed.append(
            PlacedShape(shape: shape, color: color, size: size, rgb: rgb, x: x, y: y, radius: radius))
          break
        }
      }
    }
    return placed
  }

  /// Renders the background and the objects in order (later ones on top). Returns the image and each
  /// object's scenes.json record (bbox = the pixels its shape covers, whatever lies on top).
  public static func render(_ shapes: [PlacedShape], imageSize: Int, random: inout SeededGenerator)
    -> (image: RGBImage, objects: [SceneObject])
  {
    var pixels = [UInt8](repeating: 0, count: imageSize * imageSize * 3)
    var objects: [SceneObject] = []
    pixels.withUnsafeMutableBufferPointer { buffer in
      drawBackground(buffer, side: imageSize, random: &random)
      for shape in shapes {
        let box = drawShape(shape, into: buffer, side: imageSize)
        objects.append(
          SceneObject(
            shape: shape.shape.rawValue, color: shape.color.rawValue, size: shape.size.rawValue, x: shape.x,
            y: shape.y, bbox: box.map(Double.init)))
      }
    }
    return (RGBImage(width: imageSize, height: imageSize, pixels: pixels), objects)
  }

  /// One pseudo-random background tone: a mid grey (95–165) with a mild tint, so every object colour
  /// (from black to white) stands out.
  static func backgroundTone(_ random: inout SeededGenerator) -> [Int] {
    let grey = random.int(in: 95...165)
    return (0..<3).map { _ in grey + random.int(in: -14...14) }
  }

  static func drawBackground(
    _ pixels: UnsafeMutableBufferPointer<UInt8>, side: Int, random: inout SeededGenerator
  ) {
    let tone = backgroundTone(&random)
    func put(_ x: Int, _ y: Int, _ c: Int, _ value: Int) {
      pixels[(y * side + x) * 3 + c] = UInt8(min(255, max(0, value)))
    }
    switch random.below32(4) {
    case 0:  // plain
      for y in 0..<side { for x in 0..<side { for c in 0..<3 { put(x, y, c, tone[c]) } } }
    case 1:  // linear gradient between two tones, along one of four directions
      let other = backgroundTone(&random)
      let direction = random.below32(4)
      let span = max(1, direction < 2 ? side - 1 : 2 * (side - 1))
      for y in 0..<side {
        for x in 0..<side {
          let t = direction == 0 ? x : direction == 1 ? y : direction == 2 ? x + y : (side - 1 - x) + y
          for c in 0..<3 { put(x, y, c, tone[c] + (other[c] - tone[c]) * t / span) }
        }
      }
    case 2:  // noise, per pixel and channel
      let amplitude = random.int(in: 8...16)
      for y in 0..<side {
        for x in 0..<side {
          let shared = random.int(in: -amplitude...amplitude)
          for c in 0..<3 { put(x, y, c, tone[c] + shared + random.int(in: -4...4)) }
        }
      }
    default:  // texture: stripes (three orientations) or a checkerboard, low contrast
      let pattern = random.below32(4)
      let period = random.int(in: 4...9)
      let amplitude = random.int(in: 7...14)
      for y in 0..<side {
        for x in 0..<side {
          let phase: Int
          switch pattern {
          case 0: phase = x / period
          case 1: phase = y / period
          case 2: phase = (x + y) / period
          default: phase = x / period + y / period
          }
          let offset = phase % 2 == 0 ? amplitude : -amplitude
          for c in 0..<3 { put(x, y, c, tone[c] + offset) }
        }
      }
    }
  }

  /// Blends one shape into the image with its coverage (k of 16 subsamples inside):
  /// pixel = (background·(16 − k) + colour·k + 8) / 16. Returns [x0, y0, x1, y1] of covered pixels.
  static func drawShape(_ shape: PlacedShape, into pixels: UnsafeMutableBufferPointer<UInt8>, side: Int)
    -> [Int]
  {
    let n = subsamples
    let levels = n * n
    let x0 = max(0, Int((shape.x - shape.radius).rounded(.down)))
    let y0 = max(0, Int((shape.y - shape.radius).rounded(.down)))
    let x1 = min(side, Int((shape.x + shape.radius).rounded(.up)) + 1)
    let y1 = min(side, Int((shape.y + shape.radius).rounded(.up)) + 1)
    let cx = Float(shape.x)
    let cy = Float(shape.y)
    let inverseRadius = 1 / Float(shape.radius)
    var (left, top, right, bottom) = (side, side, 0, 0)
    for py in y0..<y1 {
      for px in x0..<x1 {
        var covered = 0
        for sy in 0..<n {
          let v = (Float(py) + (Float(sy) + 0.5) / Float(n) - cy) * inverseRadius
          for sx in 0..<n {
            let u = (Float(px) + (Float(sx) + 0.5) / Float(n) - cx) * inverseRadius
            if shape.shape.contains(u, v) { covered += 1 }
          }
        }
        guard covered > 0 else { continue }
        (left, top) = (min(left, px), min(top, py))
        (right, bottom) = (max(right, px + 1), max(bottom, py + 1))
        let base = (py * side + px) * 3
        for c in 0..<3 {
          let under = Int(pixels[base + c])
          pixels[base + c] = UInt8(
            (under * (levels - covered) + shape.rgb[c] * covered + levels / 2) / levels)
        }
      }
    }
    return [left, top, right, bottom]
  }
}
