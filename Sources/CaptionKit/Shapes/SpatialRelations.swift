/// The geometric meaning of every spatial phrase, shared by the caption generator and the grounded
/// evaluation, so "to the left of" means the same to both (SPEC §9).
///
/// Positions are object centres in pixels (x right, y down) in an image of side `size`. Each
/// definition has a plain form (what the evaluation checks) and a `strict` form with a safety margin
/// (what the generator requires before it states a relation), so every generated phrase clearly holds.

/// A relation between two objects: `subject` is `relation` `object` ("the circle is left of the star").
public enum PairRelation: String, CaseIterable, Sendable {
  case leftOf = "left of"
  case rightOf = "right of"
  case above
  case below

  /// subject left of object: x_object − x_subject ≥ 0.08·size (strict: 0.15·size); likewise for the
  /// other directions along their axis.
  public func holds(
    subject: (x: Double, y: Double), object: (x: Double, y: Double), size: Double, strict: Bool = false
  ) -> Bool {
    let margin = (strict ? 0.15 : 0.08) * size
    switch self {
    case .leftOf: return object.x - subject.x >= margin
    case .rightOf: return subject.x - object.x >= margin
    case .above: return object.y - subject.y >= margin
    case .below: return subject.y - object.y >= margin
    }
  }
}

/// Where one object lies in the picture.
public enum Region: String, CaseIterable, Sendable {
  case topLeft = "top left corner"
  case topRight = "top right corner"
  case bottomLeft = "bottom left corner"
  case bottomRight = "bottom right corner"
  case top, bottom, left, right, center

  /// left: x < 0.4·size (strict 0.33); right: x > 0.6·size (strict 0.67); top and bottom likewise
  /// in y; a corner is both of its sides; center: |x − size/2| and |y − size/2| ≤ 0.15·size
  /// (strict 0.08).
  public func holds(x: Double, y: Double, size: Double, strict: Bool = false) -> Bool {
    let side = (strict ? 0.33 : 0.4) * size
    let isLeft = x < side
    let isRight = x > size - side
    let isTop = y < side
    let isBottom = y > size - side
    switch self {
    case .topLeft: return isTop && isLeft
    case .topRight: return isTop && isRight
    case .bottomLeft: return isBottom && isLeft
    case .bottomRight: return isBottom && isRight
    case .top: return isTop
    case .bottom: return isBottom
    case .left: return isLeft
    case .right: return isRight
    case .center:
      let half = (strict ? 0.08 : 0.15) * size
      return abs(x - size / 2) <= half && abs(y - size / 2) <= half
    }
  }
}

/// "A between B and C": B and C at least 0.2·size apart, A's projection on the segment BC within
/// its middle 70% (strict: 40%), and A's distance from the line BC at most 0.3·|BC| (strict 0.15).
public enum Betweenness {
  public static func holds(
    _ a: (x: Double, y: Double), _ b: (x: Double, y: Double), _ c: (x: Double, y: Double),
    size: Double, strict: Bool = false
  ) -> Bool {
    let dx = c.x - b.x
    let dy = c.y - b.y
    let length2 = dx * dx + dy * dy
    guard length2 >= (0.2 * size) * (0.2 * size) else { return false }
    let ax = a.x - b.x
    let ay = a.y - b.y
    let along = (ax * dx + ay * dy) / length2  // t: 0 at B, 1 at C
    let across = abs(ax * dy - ay * dx) / length2  // distance from the line / |BC|
    return strict
      ? along >= 0.3 && along <= 0.7 && across <= 0.15
      : along >= 0.15 && along <= 0.85 && across <= 0.3
  }
}
