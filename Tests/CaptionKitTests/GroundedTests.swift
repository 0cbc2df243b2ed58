import Foundation
import XCTest

@testable import CaptionKit

final class GroundedTests: XCTestCase {
  /// A 64×64 scene: a small red circle top left, a large blue square top right, a medium green star
  /// at the bottom centre, and two medium yellow hearts low on either side.
  let scene = Scene(
    imageId: 0, filename: "images/000000.png",
    objects: [
      object("circle", "red", "small", 10, 10),
      object("square", "blue", "large", 50, 12),
      object("star", "green", "medium", 32, 50),
      object("heart", "yellow", "medium", 12, 44),
      object("heart", "yellow", "medium", 52, 46),
    ])

  static let correct =
    "a small red circle to the left of a large blue square and two medium yellow hearts and a green star"

  func judge(_ caption: String, _ scene: Scene? = nil) -> (GroundedScores, Set<Int>) {
    let tokens = caption.split(separator: " ").map(String.init)
    let scene = scene ?? self.scene
    return (
      GroundedEvaluation.score(tokens: tokens, scene: scene),
      GroundedEvaluation.wrongWords(tokens: tokens, scene: scene)
    )
  }

  func assertCounts(
    _ s: GroundedScores, mentioned: Int, matched: Int, size: (Int, Int), count: (Int, Int),
    relation: (Int, Int), file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(s.sceneObjects, 5, file: file, line: line)
    XCTAssertEqual(s.mentionedObjects, mentioned, "mentioned", file: file, line: line)
    XCTAssertEqual(s.matchedObjects, matched, "matched", file: file, line: line)
    XCTAssertEqual(s.sizeCorrect, size.0, "size correct", file: file, line: line)
    XCTAssertEqual(s.sizeTotal, size.1, "size total", file: file, line: line)
    XCTAssertEqual(s.countCorrect, count.0, "count correct", file: file, line: line)
    XCTAssertEqual(s.countTotal, count.1, "count total", file: file, line: line)
    XCTAssertEqual(s.relationCorrect, relation.0, "relation correct", file: file, line: line)
    XCTAssertEqual(s.relationTotal, relation.1, "relation total", file: file, line: line)
  }

  func testCorrectCaptionScoresPerfectly() {
    let (s, wrong) = judge(Self.correct)
    assertCounts(s, mentioned: 5, matched: 5, size: (4, 4), count: (1, 1), relation: (1, 1))
    XCTAssertEqual(s.objectF1, 1)
    XCTAssertTrue(wrong.isEmpty)
  }

  // Tokens of the correct caption: a(0) small(1) red(2) circle(3) to(4) the(5) left(6) of(7) a(8)
  // large(9) blue(10) square(11) and(12) two(13) medium(14) yellow(15) hearts(16) and(17) a(18)
  // green(19) star(20).

  func testWrongColour() {
    let (s, wrong) = judge(
      Self.correct.replacingOccurrences(of: "small red circle", with: "small green circle"))
    // The circle matches nothing, so its relation is not judged and its size not counted.
    assertCounts(s, mentioned: 5, matched: 4, size: (3, 3), count: (1, 1), relation: (0, 0))
    XCTAssertEqual(s.objectPrecision, 0.8)
    XCTAssertEqual(s.objectRecall, 0.8)
    XCTAssertEqual(s.objectF1, 0.8, accuracy: 1e-12)
    XCTAssertEqual(wrong, [2, 3])
  }

  func testWrongShape() {
    let (s, wrong) = judge(
      Self.correct.replacingOccurrences(of: "large blue square", with: "large blue diamond"))
    assertCounts(s, mentioned: 5, matched: 4, size: (3, 3), count: (1, 1), relation: (0, 0))
    XCTAssertEqual(wrong, [10, 11])
  }

  func testMissingObject() {
    let (s, wrong) = judge(Self.correct.replacingOccurrences(of: " and a green star", with: ""))
    assertCounts(s, mentioned: 4, matched: 4, size: (4, 4), count: (1, 1), relation: (1, 1))
    XCTAssertEqual(s.objectPrecision, 1)
    XCTAssertEqual(s.objectRecall, 0.8)
    XCTAssertEqual(s.objectF1, 2 * 0.8 / 1.8, accuracy: 1e-12)
    XCTAssertTrue(wrong.isEmpty)
  }

  func testWrongCount() {
    let (s, wrong) = judge(Self.correct.replacingOccurrences(of: "two medium", with: "three medium"))
    // Three claimed, two there: one unmatched claim, and the count is wrong.
    assertCounts(s, mentioned: 6, matched: 5, size: (4, 4), count: (0, 1), relation: (1, 1))
    XCTAssertEqual(s.objectPrecision, 5.0 / 6.0)
    XCTAssertEqual(s.objectRecall, 1)
    XCTAssertEqual(wrong, [13])
    // Too few is also a wrong count, and leaves a heart unmentioned.
    let (fewer, fewerWrong) = judge(
      Self.correct.replacingOccurrences(of: "two medium yellow hearts", with: "one medium yellow heart"))
    assertCounts(fewer, mentioned: 4, matched: 4, size: (3, 3), count: (0, 1), relation: (1, 1))
    XCTAssertEqual(fewerWrong, [13])
  }

  func testFalseRelation() {
    let (s, wrong) = judge(Self.correct.replacingOccurrences(of: "to the left of", with: "to the right of"))
    assertCounts(s, mentioned: 5, matched: 5, size: (4, 4), count: (1, 1), relation: (0, 1))
    XCTAssertEqual(s.relationAccuracy, 0)
    XCTAssertEqual(wrong, [4, 5, 6, 7])
    let (below, _) = judge(Self.correct.replacingOccurrences(of: "to the left of", with: "below"))
    XCTAssertEqual(below.relationTotal, 1)
    XCTAssertEqual(below.relationCorrect, 0)
  }

  func testWrongSize() {
    let (s, wrong) = judge(
      Self.correct.replacingOccurrences(of: "small red circle", with: "large red circle"))
    assertCounts(s, mentioned: 5, matched: 5, size: (3, 4), count: (1, 1), relation: (1, 1))
    XCTAssertEqual(s.attributeAccuracy, 0.75)
    XCTAssertEqual(wrong, [1])
    // A synonym is the same size.
    let (synonym, _) = judge(Self.correct.replacingOccurrences(of: "large blue", with: "big blue"))
    XCTAssertEqual(synonym.sizeCorrect, 4)
  }

  func testRegions() {
    let scene = Scene(imageId: 0, filename: "", objects: [object("circle", "red", "small", 10, 10)])
    for (phrase, holds) in [
      ("in the top left corner", true), ("in the upper left corner", true), ("at the top", true),
      ("on the left", true), ("in the bottom right corner", false), ("in the center", false),
      ("on the right side", false), ("at the bottom", false),
    ] {
      let (s, wrong) = judge("a red circle " + phrase, scene)
      XCTAssertEqual(s.relationTotal, 1, phrase)
      XCTAssertEqual(s.relationCorrect, holds ? 1 : 0, phrase)
      XCTAssertEqual(wrong, holds ? [] : Set(3..<(3 + phrase.split(separator: " ").count)), phrase)
      // Fronted, the phrase's subject is the mention after it.
      let (fronted, _) = judge(phrase + " there is a red circle", scene)
      XCTAssertEqual(fronted.relationCorrect, holds ? 1 : 0, phrase)
    }
    let centre = Scene(imageId: 0, filename: "", objects: [object("star", "pink", "large", 30, 36)])
    XCTAssertEqual(judge("a pink star in the middle", centre).0.relationCorrect, 1)
  }

  func testFrontedPairRelation() {
    XCTAssertEqual(judge("to the left of a blue square there is a red circle").0.relationCorrect, 1)
    let (s, wrong) = judge("to the right of a blue square there is a red circle")
    XCTAssertEqual(s.relationTotal, 1)
    XCTAssertEqual(s.relationCorrect, 0)
    XCTAssertEqual(wrong, [0, 1, 2, 3])
    // After "and" a relation also takes its subject from later words.
    let (afterAnd, _) = judge("a blue square and below a red circle is a green star")
    XCTAssertEqual(afterAnd.relationTotal, 1)
    XCTAssertEqual(afterAnd.relationCorrect, 1)
  }

  func testBetween() {
    let objects = [
      object("circle", "red", "small", 32, 30), object("square", "blue", "small", 10, 28),
      object("star", "green", "small", 54, 34),
    ]
    let scene = Scene(imageId: 0, filename: "", objects: objects)
    XCTAssertEqual(judge("a red circle between a blue square and a green star", scene).0.relationCorrect, 1)
    XCTAssertEqual(
      judge("between a blue square and a green star sits a red circle", scene).0.relationCorrect, 1)
    let (s, wrong) = judge("a blue square between a red circle and a green star", scene)
    XCTAssertEqual(s.relationTotal, 1)
    XCTAssertEqual(s.relationCorrect, 0)
    XCTAssertEqual(wrong, [3])
    var high = objects
    high[0].y = 5
    let (off, _) = judge(
      "a red circle between a blue square and a green star", Scene(imageId: 0, filename: "", objects: high))
    XCTAssertEqual(off.relationCorrect, 0)
  }

  func testParserStructure() {
    let parsed = GroundedParser.parse(
      "a pair of big red circles above a blue star".split(separator: " ").map(String.init))
    XCTAssertEqual(parsed.mentions.count, 2)
    XCTAssertEqual(parsed.mentions[0].count, 2)
    XCTAssertTrue(parsed.mentions[0].counted)
    XCTAssertEqual(parsed.mentions[0].size, "large")
    XCTAssertEqual(parsed.mentions[0].color, "red")
    XCTAssertEqual(parsed.mentions[0].shape, "circle")
    XCTAssertEqual(parsed.mentions[0].countToken, 1)
    XCTAssertFalse(parsed.mentions[1].counted)
    XCTAssertEqual(
      parsed.relations,
      [GroundedParser.Relation(kind: .pair(.above), subject: 0, objects: [1], tokens: 6..<7)])

    // A total ("three shapes") is not a mention; a shape without a colour is one that matches nothing.
    let listing = GroundedParser.parse(["three", "shapes", "a", "red", "circle", "and", "a", "star"])
    XCTAssertEqual(listing.mentions.map(\.count), [1, 1])
    XCTAssertFalse(listing.mentions[0].counted)
    XCTAssertNil(listing.mentions[1].color)
    let (s, wrong) = judge("a red circle and a star")
    XCTAssertEqual(s.matchedObjects, 1)
    XCTAssertEqual(wrong, [5])
    // Words the parser does not know are ignored, and nothing at all is a caption that claims nothing.
    XCTAssertEqual(judge("").0.mentionedObjects, 0)
    XCTAssertEqual(judge("").0.objectF1, 0)
    XCTAssertEqual(judge("a zebra on a field").0.mentionedObjects, 0)
  }

  func testMatchingPrefersTheStatedSize() {
    let scene = Scene(
      imageId: 0, filename: "",
      objects: [object("circle", "red", "small", 10, 10), object("circle", "red", "large", 50, 50)])
    // Model-style output that names the two red circles separately, the large one first.
    let (s, _) = judge("a large red circle and a small red circle", scene)
    XCTAssertEqual(s.matchedObjects, 2)
    XCTAssertEqual(s.sizeCorrect, 2)
  }

  func testSplitScoreIsMicroAveraged() {
    let single = Scene(imageId: 1, filename: "", objects: [object("circle", "red", "small", 10, 10)])
    func words(_ text: String) -> [String] { text.split(separator: " ").map(String.init) }
    // One tokenised caption per image, as `caption evaluate` has them.
    let captions: [Int: [String]] = [
      0: words(Self.correct), 1: words("a blue circle in the top left corner"), 9: words("a red circle"),
    ]
    let s = GroundedEvaluation.score(captions: captions, scenes: [0: scene, 1: single])
    XCTAssertEqual(s.captions, 2)
    XCTAssertEqual(s.captionsWithoutScene, 1)
    XCTAssertEqual(s.sceneObjects, 6)
    XCTAssertEqual(s.mentionedObjects, 6)
    XCTAssertEqual(s.matchedObjects, 5)
    XCTAssertEqual(s.objectPrecision, 5.0 / 6.0)
    XCTAssertEqual(s.objectRecall, 5.0 / 6.0)
    XCTAssertEqual(s.sizeTotal, 4)
    XCTAssertEqual(s.relationTotal, 1)
    XCTAssertEqual(s.relationAccuracy, 1)

    // Several raw captions per image (references): each tokenised and scored.
    let raw: [Int: [String]] = [
      0: [Self.correct.capitalized + ".", "A small red circle."], 1: ["A red circle, on the right."],
    ]
    let r = GroundedEvaluation.score(rawCaptions: raw, scenes: [0: scene, 1: single])
    XCTAssertEqual(r.captions, 3)
    XCTAssertEqual(r.sceneObjects, 11)
    XCTAssertEqual(r.mentionedObjects, 7)
    XCTAssertEqual(r.matchedObjects, 7)
    XCTAssertEqual(r.relationTotal, 2)
    XCTAssertEqual(r.relationCorrect, 1)
  }

  func testRelationDefinitions() {
    // Margins are fractions of the image side: 0.08 plain, 0.15 strict.
    XCTAssertTrue(PairRelation.leftOf.holds(subject: (0.2, 0.5), object: (0.28, 0.9), size: 1))
    XCTAssertFalse(PairRelation.leftOf.holds(subject: (0.2, 0.5), object: (0.27, 0.5), size: 1))
    XCTAssertFalse(PairRelation.leftOf.holds(subject: (0.2, 0.5), object: (0.3, 0.5), size: 1, strict: true))
    XCTAssertTrue(PairRelation.above.holds(subject: (10, 10), object: (10, 40), size: 64))
    XCTAssertTrue(PairRelation.below.holds(subject: (10, 40), object: (10, 10), size: 64))
    XCTAssertFalse(PairRelation.rightOf.holds(subject: (10, 40), object: (10, 10), size: 64))
    XCTAssertTrue(Region.center.holds(x: 0.6, y: 0.4, size: 1))
    XCTAssertFalse(Region.center.holds(x: 0.6, y: 0.4, size: 1, strict: true))
    XCTAssertTrue(Region.left.holds(x: 0.39, y: 0.9, size: 1))
    XCTAssertFalse(Region.left.holds(x: 0.39, y: 0.9, size: 1, strict: true))
    XCTAssertTrue(Betweenness.holds((0.5, 0.5), (0.1, 0.5), (0.9, 0.5), size: 1, strict: true))
    XCTAssertFalse(Betweenness.holds((0.95, 0.5), (0.1, 0.5), (0.9, 0.5), size: 1))
    XCTAssertFalse(Betweenness.holds((0.5, 0.5), (0.45, 0.5), (0.55, 0.5), size: 1))  // B, C too close
  }

  // MARK: scenes.json

  func testScenesLoad() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let path = folder + "/scenes.json"
    try AtomicFile.write(
      Array(
        """
        {"images": [{"image_id": 3, "filename": "images/a.png", "width": 48, "height": 48, "objects": [
          {"shape": "star", "color": "red", "size": "small", "x": 12.5, "y": 30, "bbox": [8, 25, 17, 35]}]},
          {"image_id": 4, "filename": "images/b.png", "objects": []}]}
        """.utf8), to: path)
    let scenes = try Scenes.load(path: path)
    XCTAssertEqual(scenes.count, 2)
    XCTAssertEqual(scenes[3]?.width, 48)
    XCTAssertEqual(
      scenes[3]?.objects,
      [SceneObject(shape: "star", color: "red", size: "small", x: 12.5, y: 30, bbox: [8, 25, 17, 35])])
    XCTAssertEqual(scenes[4]?.width, 64)

    for (content, expected) in [
      ("{\"images\": [{\"image_id\": 1, \"objects\": []}]}", "images[0].filename: missing"),
      ("{\"images\": [", "bad JSON: line 1, column 13: unexpected end of file"),
      (
        "{\"images\": [{\"image_id\": 1, \"filename\": \"a\", \"objects\": [{\"shape\": 3}]}]}",
        "images[0].objects[0].shape"
      ),
      (
        "{\"images\": [{\"image_id\": 1, \"filename\": \"a\", \"objects\": []}, {\"image_id\": 1, \"filename\": \"b\", \"objects\": []}]}",
        "image_id 1 appears twice"
      ),
    ] {
      try AtomicFile.write(Array(content.utf8), to: path)
      XCTAssertThrowsError(try Scenes.load(path: path)) { error in
        let error = error as? CaptionError
        XCTAssertEqual(error?.kind, .badDataset)
        XCTAssertEqual(error?.path, path)
        XCTAssertTrue(error?.reason.contains(expected) ?? false, "\(error?.reason ?? "") lacks \(expected)")
      }
    }
    XCTAssertThrowsError(try Scenes.load(path: folder + "/missing.json")) { error in
      XCTAssertEqual((error as? CaptionError)?.kind, .unreadable)
    }
  }
}

private func object(_ shape: String, _ color: String, _ size: String, _ x: Double, _ y: Double) -> SceneObject
{
  SceneObject(shape: shape, color: color, size: size, x: x, y: y, bbox: [x - 5, y - 5, x + 5, y + 5])
}
