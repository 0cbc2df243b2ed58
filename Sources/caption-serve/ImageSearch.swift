import CaptionKit
import Foundation

/// `GET /v1/search`: an image index (`caption index`) searched with the model's sentence encoder, as
/// `caption search --index` searches it. The search has its own copy of the model and its own
/// thread, so a search never waits for a caption batch, nor a batch for a search.
final class ImageSearch: @unchecked Sendable {
  /// The most results a request may ask for, and the searches admitted at once (more get 503).
  static let maximumTop = 1000
  let capacity: Int
  private let space: JointSpace  // used on the search thread only
  private let paths: [String]
  private let vectors: [Float]  // [N, D] row-major
  private let thread: WorkerThreads
  private let lock = NSLock()
  private var admitted = 0

  /// Loads the model at `modelPath` and the index at `indexPath`, which must have been made with that
  /// model; every defect is `caption search --index`'s error.
  init(indexPath: String, modelPath: String, capacity: Int) throws {
    space = try JointSpace(modelPath: modelPath)
    let index = try space.index(path: indexPath)
    paths = index.entries.map(\.path)
    vectors = index.embeddings
    self.capacity = capacity
    thread = WorkerThreads(count: 1, name: "search")
  }

  /// The images of the index.
  var count: Int { paths.count }

  /// The `top` best images for `text`, best first, with their cosines. The text's errors are
  /// `CaptionError`s (no word, no known word); a 503 when `capacity` searches are under way.
  func search(_ text: String, top: Int) async throws -> [(path: String, score: Float)] {
    guard admit() else {
      throw ServeError(
        .serviceUnavailable, "too many searches at once; try again", headers: [.retryAfter: "1"])
    }
    defer { leave() }
    let (space, paths, vectors) = (UncheckedSpace(space), paths, vectors)
    return try await thread.run {
      let query = try space.value.textVector(text)
      let best = vectors.withUnsafeBufferPointer {
        JointSpace.rank(query: query, vectors: $0.baseAddress!, count: paths.count, top: top)
      }
      return best.map { (paths[$0.row], $0.score) }
    }
  }

  private func admit() -> Bool {
    lock.lock()
    defer { lock.unlock() }
    guard admitted < capacity else { return false }
    admitted += 1
    return true
  }

  private func leave() {
    lock.lock()
    admitted -= 1
    lock.unlock()
  }
}

/// The joint space handed to the search thread, the one thread that uses it.
private struct UncheckedSpace: @unchecked Sendable {
  let value: JointSpace
  init(_ value: JointSpace) { self.value = value }
}

/// The query of `GET /v1/search`.
enum SearchRequest {
  /// `q` (the text, required) and `top` (1–`ImageSearch.maximumTop`, default 10, as
  /// `caption search --top`). An unknown, repeated or bad parameter is a 400.
  static func parameters(query: [(name: String, value: String)]) throws -> (text: String, top: Int) {
    var text: String? = nil
    var top = 10
    var seen: Set<String> = []
    for (name, value) in query {
      guard seen.insert(name).inserted else { throw bad("parameter \(name) is given more than once") }
      switch name {
      case "q": text = value
      case "top":
        guard let number = Int(value), (1...ImageSearch.maximumTop).contains(number) else {
          throw bad("top must be an integer from 1 to \(ImageSearch.maximumTop), got \(value)")
        }
        top = number
      default: throw bad("unknown parameter \(name); known: q, top")
      }
    }
    guard let text else {
      throw bad("parameter q is missing: give the text to search for, e.g. ?q=red+circle")
    }
    return (text, top)
  }

  private static func bad(_ message: String) -> ServeError { ServeError(.badRequest, message) }
}

/// The 200 body of `GET /v1/search`: `{"results": [{"image": PATH, "score": FLOAT}, …]}`, each
/// result the object `caption search --json` prints on its line.
enum SearchResponse {
  static func json(_ results: [(path: String, score: Float)]) -> String {
    "{\"results\": ["
      + results.map { JointSpace.resultJSON(path: $0.path, score: $0.score) }.joined(separator: ", ")
      + "]}"
  }
}
