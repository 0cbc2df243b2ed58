/// The vocabulary of the shapes world: shapes, colours and sizes, with their names in scenes.json
/// and the words captions use for them.

public enum ShapeKind: String, CaseIterable, Sendable {
  case circle, square, triangle, star, hexagon, diamond, cross, heart

  public var plural: String { self == .cross ? "crosses" : rawValue + "s" }

  /// Whether the point (u, v), in units of the object's radius around its centre (v downwards),
  /// lies inside the shape. Every shape fits in the square [−1, 1]² (the area the renderer scans). Only +, −, ×, ÷ and comparisons,
  /// so the answer is the same on every IEEE machine.
  @inline(__always)
  func contains(_ u: Float, _ v: Float) -> Bool {
    let au = abs(u)
    let av = abs(v)
    switch self {
    case .circle:
      return u * u + v * v <= 0.81  // radius 0.9
    case .square:
      return au <= 0.78 && av <= 0.78
    case .diamond:
      return au * 1.2 + av <= 0.98  // corners (±0.82, 0) and (0, ±0.98): a little taller than wide
    case .triangle:
      // apex (0, −0.92), base at v = 0.76 from u = −0.97 to 0.97
      return v <= 0.76 && v >= -0.92 && au * 1.68 <= 0.97 * (v + 0.92)
    case .hexagon:
      // pointy left and right, circumradius 0.95: |v| ≤ 0.95·√3/2, √3/2·|u| + |v|/2 ≤ 0.95·√3/2
      return av <= 0.822724 && au * 0.866025 + av * 0.5 <= 0.822724
    case .cross:
      return (au <= 0.3 && av <= 0.92) || (av <= 0.3 && au <= 0.92)
    case .heart:
      // two lobes (centres (±0.42, −0.3), radius 0.45) over a point at (0, 0.9)
      let lu = au - 0.42
      let lv = v + 0.3
      if lu * lu + lv * lv <= 0.2025 { return true }
      return v >= -0.3 && v <= 0.9 && au * 1.2 <= 0.87 * (0.9 - v)
    case .star:
      return ShapeKind.starContains(u, v - 0.095)  // centred: points span v ∈ [−0.905, 0.905]
    }
  }

  /// Five-pointed star, outer radius 1, inner 0.42, a point upwards (even–odd crossing test).
  private static let starVertices: [(Float, Float)] = [
    (0.000000, -1.000000), (0.246870, -0.339787), (0.951057, -0.309017), (0.399444, 0.129787),
    (0.587785, 0.809017), (0.000000, 0.420000), (-0.587785, 0.809017), (-0.399444, 0.129787),
    (-0.951057, -0.309017), (-0.246870, -0.339787),
  ]

  private static func starContains(_ u: Float, _ v: Float) -> Bool {
    var inside = false
    var j = starVertices.count - 1
    for i in 0..<starVertices.count {
      let (ui, vi) = starVertices[i]
      let (uj, vj) = starVertices[j]
      if (vi > v) != (vj > v) && u < (uj - ui) * (v - vi) / (vj - vi) + ui {
        inside.toggle()
      }
      j = i
    }
    return inside
  }
}

public enum ShapeColor: String, CaseIterable, Sendable {
  case red, orange, yellow, green, blue, purple, pink, cyan, white, black

  /// The centre of the colour's range; each object draws within ±`jitter` per channel.
  var base: (Int, Int, Int) {
    switch self {
    case .red: return (212, 34, 36)
    case .orange: return (244, 138, 22)
    case .yellow: return (240, 222, 40)
    case .green: return (40, 168, 62)
    case .blue: return (38, 78, 218)
    case .purple: return (136, 48, 178)
    case .pink: return (246, 132, 192)
    case .cyan: return (40, 204, 214)
    case .white: return (242, 242, 242)
    case .black: return (22, 22, 22)
    }
  }

  static let jitter = 14
}

public enum ShapeSize: String, CaseIterable, Sendable {
  case small, medium, large

  /// Radius as a fraction of the image side.
  var radiusFraction: Double {
    switch self {
    case .small: return 0.085
    case .medium: return 0.12
    case .large: return 0.165
    }
  }
}
