import FoundationEssentials
import Glibc

// Grounded evaluation (SPEC §9): a caption checked against the objects actually in the picture.
// The scene types and loader are here; the caption parser is in GroundedParser.swift.

/// One object of a shapes scene, as scenes.json stores it: names (`shape`, `color`, `size`), the
/// centre (x, y) in pixels (x right, y down, pixel i spans [i, i+1)) and the bounding box of its
/// drawn pixels [x0, y0, x1, y1] (x1, y1 exclusive).
public struct SceneObject: Codable, Equatable, Sendable {
  public var shape: String
  public var color: String
  public var size: String
  public var x: Double
  public var y: Double
  public var bbox: [Double]

  public init(shape: String, color: String, size: String, x: Double, y: Double, bbox: [Double]) {
    self.shape = shape
    self.color = color
    self.size = size
    self.x = x
    self.y = y
    self.bbox = bbox
  }
}

/// One image's ground truth. `width` and `height` are the image's size (scenes.json's optional
/// `width`/`height` keys, which `caption dataset shapes` writes; 64 when absent); spatial phrases are
/// judged on positions relative to them.
public struct Scene: Equatable, Sendable {
  public var imageId: Int
  public var filename: String
  public var width: Int
  public var height: Int
  public var objects: [SceneObject]

  public init(imageId: Int, filename: String, width: Int = 64, height: Int = 64, objects: [SceneObject]) {
    self.imageId = imageId
    self.filename = filename
    self.width = width
    self.height = height
    self.objects = objects
  }
}

public enum Scenes {
  /// Reads scenes.json, keyed by image id.
  public static func load(path: String) throws -> [Int: Scene] {
    return try parse(
      Data(try RegularFile.read(path, maximumBytes: JSONValue.maximumFileBytes, what: "a scenes file")),
      path: path)
  }

  /// Parses the content of a scenes.json (`path` names it in errors):
  /// `{"images": [{"image_id", "filename", "width"?, "height"?, "objects": [{"shape", "color",
  /// "size", "x", "y", "bbox"}]}]}`.
  public static func parse(_ data: Data, path: String) throws -> [Int: Scene] {
    let top = JSONPlace(file: path, place: "")
    let root = try top.object(try JSONValue.parse(data, file: path))
    var scenes: [Int: Scene] = [:]
    for (position, entry) in try top.child("images").array(root["images"]).enumerated() {
      if position & (Interrupted.checkEvery - 1) == 0 { try Interrupted.check() }
      let place = top.child("images").index(position)
      let image = try place.object(entry)
      let imageId = try place.child("image_id").integer(image["image_id"])
      let filename = try place.child("filename").string(image["filename"])
      let width = try place.child("width").optionalInteger(image["width"]) ?? 64
      let height = try place.child("height").optionalInteger(image["height"]) ?? 64
      guard width > 0, height > 0 else { throw place.fail("width and height must be positive") }
      var objects: [SceneObject] = []
      for (k, entry) in try place.child("objects").array(image["objects"]).enumerated() {
        if k & (Interrupted.checkEvery - 1) == 0 { try Interrupted.check() }
        let at = place.child("objects").index(k)
        let object = try at.object(entry)
        let shape = try at.child("shape").string(object["shape"])
        let color = try at.child("color").string(object["color"])
        let size = try at.child("size").string(object["size"])
        let x = try at.child("x").number(object["x"])
        let y = try at.child("y").number(object["y"])
        let bbox = try at.child("bbox").array(object["bbox"]).enumerated().map {
          try at.child("bbox").index($0.offset).number($0.element)
        }
        guard x.isFinite, y.isFinite, bbox.count == 4, bbox.allSatisfy(\.isFinite) else {
          throw at.fail("x, y must be numbers and bbox four numbers")
        }
        objects.append(SceneObject(shape: shape, color: color, size: size, x: x, y: y, bbox: bbox))
      }
      guard scenes[imageId] == nil else { throw place.fail("image_id \(imageId) appears twice") }
      scenes[imageId] = Scene(
        imageId: imageId, filename: filename, width: width, height: height, objects: objects)
    }
    return scenes
  }
}

/// Grounded scores micro-averaged over a set of captions, with the raw counts behind them.
/// An accuracy with nothing to judge (total 0) is reported as 0; the totals say when that happens.
public struct GroundedScores: Equatable, Sendable {
  /// Captions scored (those whose image has a scene).
  public var captions = 0
  /// Captions whose image id has no scene (not scored).
  public var captionsWithoutScene = 0
  /// Objects the captions claim (a counted mention of n claims n).
  public var mentionedObjects = 0
  /// Objects in the scenes of the scored captions (once per caption).
  public var sceneObjects = 0
  /// Claimed objects that matched a scene object of the same shape and colour.
  public var matchedObjects = 0
  public var sizeCorrect = 0
  public var sizeTotal = 0
  public var countCorrect = 0
  public var countTotal = 0
  public var relationCorrect = 0
  public var relationTotal = 0

  public init() {}

  public var objectPrecision: Double { ratio(matchedObjects, mentionedObjects) }
  public var objectRecall: Double { ratio(matchedObjects, sceneObjects) }
  public var objectF1: Double {
    let p = objectPrecision
    let r = objectRecall
    return p + r > 0 ? 2 * p * r / (p + r) : 0
  }
  public var attributeAccuracy: Double { ratio(sizeCorrect, sizeTotal) }
  public var countAccuracy: Double { ratio(countCorrect, countTotal) }
  public var relationAccuracy: Double { ratio(relationCorrect, relationTotal) }

  private func ratio(_ a: Int, _ b: Int) -> Double { b > 0 ? Double(a) / Double(b) : 0 }

  public static func + (a: GroundedScores, b: GroundedScores) -> GroundedScores {
    var s = a
    s.captions += b.captions
    s.captionsWithoutScene += b.captionsWithoutScene
    s.mentionedObjects += b.mentionedObjects
    s.sceneObjects += b.sceneObjects
    s.matchedObjects += b.matchedObjects
    s.sizeCorrect += b.sizeCorrect
    s.sizeTotal += b.sizeTotal
    s.countCorrect += b.countCorrect
    s.countTotal += b.countTotal
    s.relationCorrect += b.relationCorrect
    s.relationTotal += b.relationTotal
    return s
  }
}

public enum GroundedEvaluation {
  /// Scores one caption per image, given as its tokens (SPEC §6, as `CaptionMetrics` takes its
  /// candidates), against the image's scene; micro-averaged over the images. Images without a scene
  /// are counted in `captionsWithoutScene` and not scored.
  public static func score(captions: [Int: [String]], scenes: [Int: Scene]) -> GroundedScores {
    var total = GroundedScores()
    for imageId in captions.keys.sorted() {
      guard let scene = scenes[imageId] else {
        total.captionsWithoutScene += 1
        continue
      }
      total = total + judge(tokens: captions[imageId]!, scene: scene).scores
    }
    return total
  }

  /// Several captions per image (raw text, tokenised here as SPEC §6), e.g. a dataset's references.
  public static func score(rawCaptions: [Int: [String]], scenes: [Int: Scene]) -> GroundedScores {
    var total = GroundedScores()
    for imageId in rawCaptions.keys.sorted() {
      for caption in rawCaptions[imageId]! {
        guard let scene = scenes[imageId] else {
          total.captionsWithoutScene += 1
          continue
        }
        total = total + judge(tokens: PTBTokenizer.tokenize(caption), scene: scene).scores
      }
    }
    return total
  }

  /// Scores one tokenised caption against its scene.
  public static func score(tokens: [String], scene: Scene) -> GroundedScores {
    judge(tokens: tokens, scene: scene).scores
  }

  /// Indices of the tokens that are wrong about the scene (for the HTML report): the colour and shape
  /// of a mention that matches nothing, a wrong count, a wrong size, the words of a false relation.
  public static func wrongWords(tokens: [String], scene: Scene) -> Set<Int> {
    judge(tokens: tokens, scene: scene).wrong
  }

  /// The judgement of one caption: matching of mentions to objects, then each check (SPEC §9).
  static func judge(tokens: [String], scene: Scene) -> (scores: GroundedScores, wrong: Set<Int>) {
    let parsed = GroundedParser.parse(tokens)
    var scores = GroundedScores()
    var wrong = Set<Int>()
    scores.captions = 1
    scores.sceneObjects = scene.objects.count

    // Matching: each mention takes up to `count` unused objects of its shape and colour, those of
    // the stated size first.
    var used = [Bool](repeating: false, count: scene.objects.count)
    var matchedTo = [[Int]](repeating: [], count: parsed.mentions.count)
    for (m, mention) in parsed.mentions.enumerated() {
      for _ in 0..<mention.count {
        var choice: Int? = nil
        for (k, object) in scene.objects.enumerated()
        where !used[k] && object.shape == mention.shape && object.color == mention.color {
          if choice == nil { choice = k }
          if let size = mention.size, object.size == size {
            choice = k
            break
          }
        }
        guard let k = choice else { break }
        used[k] = true
        matchedTo[m].append(k)
      }
      scores.mentionedObjects += mention.count
      scores.matchedObjects += matchedTo[m].count
      if matchedTo[m].isEmpty {
        if let t = mention.colorToken { wrong.insert(t) }
        wrong.insert(mention.shapeToken)
      } else if matchedTo[m].count < mention.count, let t = mention.countToken {
        wrong.insert(t)
      }
      // Size, over the matched objects of a mention that states one.
      if let size = mention.size {
        for k in matchedTo[m] {
          scores.sizeTotal += 1
          if scene.objects[k].size == size {
            scores.sizeCorrect += 1
          } else if let t = mention.sizeToken {
            wrong.insert(t)
          }
        }
      }
      // Count, over mentions with a count word: the scene must hold exactly that many such objects.
      if mention.counted {
        scores.countTotal += 1
        let present = scene.objects.filter { $0.shape == mention.shape && $0.color == mention.color }.count
        if present == mention.count {
          scores.countCorrect += 1
        } else if let t = mention.countToken {
          wrong.insert(t)
        }
      }
    }

    // Relations between fully matched mentions, true when they hold for every object they cover.
    let width = Double(scene.width)
    let height = Double(scene.height)
    func position(_ k: Int) -> (x: Double, y: Double) {
      (scene.objects[k].x / width, scene.objects[k].y / height)
    }
    func complete(_ m: Int) -> Bool {
      !matchedTo[m].isEmpty && matchedTo[m].count == parsed.mentions[m].count
    }
    for relation in parsed.relations {
      guard complete(relation.subject), relation.objects.allSatisfy(complete) else { continue }
      scores.relationTotal += 1
      var holds = true
      switch relation.kind {
      case .pair(let pair):
        for a in matchedTo[relation.subject] {
          for b in matchedTo[relation.objects[0]]
          where !pair.holds(subject: position(a), object: position(b), size: 1) {
            holds = false
          }
        }
      case .region(let region):
        for a in matchedTo[relation.subject] where !region.holds(x: position(a).x, y: position(a).y, size: 1)
        {
          holds = false
        }
      case .between:
        for a in matchedTo[relation.subject] {
          for b in matchedTo[relation.objects[0]] {
            for c in matchedTo[relation.objects[1]]
            where !Betweenness.holds(position(a), position(b), position(c), size: 1) {
              holds = false
            }
          }
        }
      }
      if holds {
        scores.relationCorrect += 1
      } else {
        wrong.formUnion(relation.tokens)
      }
    }
    return (scores, wrong)
  }
}
