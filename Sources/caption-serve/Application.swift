import CaptionKit
import Foundation
import Hummingbird
import Logging
import NIOCore

/// The server's settings (the command line's options, SPEC §10).
struct ServeSettings: Sendable {
  var host = "127.0.0.1"
  var port = 8080
  /// Images captioned together at most.
  var maxBatch = 16
  /// How long the first image waiting for the next batch may wait for more to join.
  var maxDelayMilliseconds = 5
  /// Caption requests admitted at once (decoding, waiting or being captioned); more get 503.
  var queue = 64
  var maxBodyBytes = 20 << 20
  /// Bytes of request bodies the server holds at once (being received or waiting to be decoded).
  var bodyBudget: Int { 8 * maxBodyBytes }
  /// The most pixels an uploaded image may have (width × height as its header claims).
  var maxPixels = 16_777_216
  /// Seconds a body may take to arrive in full; a connection silent for a second longer is closed.
  var idleTimeout: Double = 30
  /// The model's compute threads.
  var threads = 1
  /// Threads that decode uploaded images.
  var decoders = 2
}

/// A request's context: Hummingbird's core storage and the connection it came on.
struct ServeContext: RequestContext {
  var coreContext: CoreRequestContextStorage
  let channel: any Channel

  init(source: ApplicationRequestContextSource) {
    coreContext = .init(source: source)
    channel = source.channel
  }
}

/// The HTTP application of `caption-serve`: the router over a loaded model, bound as `settings` say.
/// Separate from the command line so that tests run it in-process.
func buildApplication(
  captioner: Captioner, modelPath: String, settings: ServeSettings, metrics: ServeMetrics = ServeMetrics(),
  search: ImageSearch? = nil, onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
) -> some ApplicationProtocol {
  let queue = CaptionQueue(captioner: captioner, settings: settings, metrics: metrics)
  let router = buildRouter(
    queue: queue, modelJSON: captioner.modelFile.summaryJSON(path: modelPath), settings: settings,
    metrics: metrics, search: search)
  var logger = Logger(label: "caption-serve")
  logger.logLevel = .warning
  return Application(
    router: router,
    // a second more than a body's deadline, so that a stalled body is answered 408 before its
    // connection is dropped
    server: .http1(
      configuration: .init(idleTimeout: .milliseconds(Int64(settings.idleTimeout * 1000) + 1000))),
    configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "caption"),
    onServerRunning: onServerRunning,
    logger: logger)
}

/// The endpoints (SPEC §10) behind one middleware that turns every failure into `{"error": ...}`
/// and counts every answer.
func buildRouter(
  queue: CaptionQueue, modelJSON: String, settings: ServeSettings, metrics: ServeMetrics,
  search: ImageSearch? = nil
) -> Router<ServeContext> {
  let router = Router(context: ServeContext.self)
  router.add(middleware: ErrorsAndMetrics(metrics: metrics))
  let page = ServePage.html(search: search != nil)
  router.get("/") { _, _ in
    Response(
      status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
      body: .init(byteBuffer: ByteBuffer(string: page)))
  }
  router.get("/healthz") { _, _ in jsonResponse(#"{"status": "ok"}"#) }
  router.get("/readyz") { _, _ in
    guard queue.hasRoom else {
      throw ServeError(.serviceUnavailable, "the queue is full", headers: [.retryAfter: "1"])
    }
    return jsonResponse(#"{"status": "ready"}"#)
  }
  router.get("/v1/model") { _, _ in jsonResponse(modelJSON) }
  router.get("/metrics") { _, _ in
    Response(
      status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
      body: .init(byteBuffer: ByteBuffer(string: metrics.text())))
  }
  router.get("/v1/search") { request, _ -> Response in
    guard let search else {
      throw ServeError(.notFound, "this server has no image index to search (start it with --index INDEX)")
    }
    let (text, top) = try SearchRequest.parameters(query: CaptionRequest.queryPairs(request.uri.query))
    do {
      return jsonResponse(SearchResponse.json(try await search.search(text, top: top)))
    } catch let error as CaptionError {
      throw ServeError(.badRequest, error.description)  // the text has no (known) word
    }
  }
  router.post("/v1/captions") { request, context in
    try await captionResponse(request: request, context: context, queue: queue, settings: settings)
  }
  return router
}

/// The paths the router answers (a known path with another method is a 405).
let servedPaths: [String: String] = [
  "/": "GET", "/healthz": "GET", "/readyz": "GET", "/v1/model": "GET", "/metrics": "GET",
  "/v1/search": "GET", "/v1/captions": "POST",
]

/// `POST /v1/captions`: options, then the body, then a slot in the queue, then the caption.
func captionResponse(request: Request, context: ServeContext, queue: CaptionQueue, settings: ServeSettings)
  async throws -> Response
{
  var options = try CaptionRequest.options(query: CaptionRequest.queryPairs(request.uri.query))
  if options.rerank > 0 { options.rerankWeight = try queue.rerankWeight(given: options.rerankWeight) }
  let contentType = request.headers[.contentType]
  try CaptionRequest.checkContentType(contentType)
  if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > settings.maxBodyBytes {
    throw tooLarge(settings)
  }
  let body = try await readBody(request, context: context, queue: queue, settings: settings)
  defer { queue.releaseBody(body.count) }
  let bytes = try CaptionRequest.image(body: body, contentType: contentType)
  guard !bytes.isEmpty else { throw ServeError(.badRequest, "the body is empty: send an image") }
  guard queue.admit() else {
    throw ServeError(.serviceUnavailable, "the queue is full; try again", headers: [.retryAfter: "1"])
  }
  defer { queue.leave() }
  let caption: DecodedCaption
  let familiar: FamiliarVerdict
  do {
    (caption, familiar) = try await queue.caption(bytes: bytes, options: options)
  } catch let error as CaptionError {
    throw CaptionRequest.decodeError(error)
  }
  return jsonResponse(CaptionResponse.json(caption, familiar: familiar, vocabulary: queue.vocabulary))
}

/// The body, at most `maxBodyBytes`, arriving in full within the idle timeout (else 413 or 408), its
/// bytes counted in the queue's body budget (503 when that is spent; the caller gives them back).
/// After a failure the connection is closed, as the rest of the body is not read.
func readBody(_ request: Request, context: ServeContext, queue: CaptionQueue, settings: ServeSettings)
  async throws -> [UInt8]
{
  let limit = settings.maxBodyBytes
  let body = request.body
  do {
    return try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
      group.addTask {
        var bytes: [UInt8] = []
        do {
          for try await buffer in body {
            guard bytes.count + buffer.readableBytes <= limit else { throw tooLarge(settings) }
            guard queue.holdBody(buffer.readableBytes) else {
              throw ServeError(
                .serviceUnavailable, "the server holds too many uploads; try again",
                headers: [.retryAfter: "1"])
            }
            bytes += buffer.readableBytesView
          }
        } catch {
          queue.releaseBody(bytes.count)
          throw error
        }
        return bytes
      }
      group.addTask {
        try await Task.sleep(for: .milliseconds(Int64(settings.idleTimeout * 1000)))
        return nil
      }
      defer { group.cancelAll() }
      if let first = try await group.next(), let bytes = first { return bytes }
      // the deadline came first: stop reading, give back what was read
      group.cancelAll()
      while let rest = try? await group.next() {
        if let partial = rest { queue.releaseBody(partial.count) }
      }
      throw ServeError(.requestTimeout, "the body did not arrive within \(settings.idleTimeout) s")
    }
  } catch let error as ServeError {
    closeSoon(context.channel)
    throw error
  }
}

/// Closes a connection whose request body was left unread, after its answer has gone out.
func closeSoon(_ channel: any Channel) {
  channel.eventLoop.scheduleTask(in: .milliseconds(100)) { channel.close(promise: nil) }
}

func tooLarge(_ settings: ServeSettings) -> ServeError {
  ServeError(.contentTooLarge, "the body is larger than \(settings.maxBodyBytes / (1 << 20)) MB")
}

func jsonResponse(_ text: String, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
  var fields = headers
  fields[.contentType] = "application/json"
  return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: text)))
}

/// The 200 body of `POST /v1/captions`.
enum CaptionResponse {
  /// `{"caption": TEXT, "tokens": [WORDS], "logprob": FLOAT, "familiar": true|false|null}`, with
  /// `"cosine"` and `"rerank_score"` after `logprob` for a reranked caption: describe --json's keys
  /// and values without `image`.
  static func json(_ caption: DecodedCaption, familiar: FamiliarVerdict, vocabulary: Vocabulary) -> String {
    let words = caption.words(vocabulary)
    var line = "{\"caption\": " + DescribeOutput.jsonString(words.joined(separator: " "))
    line += ", \"tokens\": [" + words.map(DescribeOutput.jsonString).joined(separator: ", ") + "]"
    line += ", \"logprob\": " + DescribeOutput.jsonNumber(caption.logprob)
    if let rerank = caption.rerank {
      line += ", \"cosine\": " + DescribeOutput.jsonNumber(rerank.cosine)
      line += ", \"rerank_score\": " + DescribeOutput.jsonNumber(rerank.score)
    }
    return line + ", \"familiar\": " + familiar.json + "}"
  }
}

/// Every answer as JSON `{"error": MESSAGE}` when it is not a success, a 405 for a known path with
/// another method, and the request counted in the metrics by endpoint and status.
struct ErrorsAndMetrics: RouterMiddleware {
  typealias Context = ServeContext
  let metrics: ServeMetrics

  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
    async throws -> Response
  {
    let start = ContinuousClock.now
    var response: Response
    do {
      response = try await next(request, context)
    } catch let error as ServeError {
      response = jsonResponse(
        "{\"error\": " + JSONText.quoted(error.message) + "}", status: error.status, headers: error.headers)
    } catch let error as HTTPError {
      response = Self.answer(to: error, request: request)
    } catch {
      response = jsonResponse(#"{"error": "internal error"}"#, status: .internalServerError)
    }
    let endpoint = servedPaths[request.uri.path] != nil ? request.uri.path : "unmatched"
    metrics.record(endpoint: endpoint, status: response.status.code, duration: ContinuousClock.now - start)
    return response
  }

  static func answer(to error: HTTPError, request: Request) -> Response {
    if error.status == .notFound, let allowed = servedPaths[request.uri.path] {
      return jsonResponse(
        "{\"error\": "
          + JSONText.quoted("\(request.method) is not allowed on \(request.uri.path); use \(allowed)")
          + "}", status: .methodNotAllowed, headers: [.allow: allowed])
    }
    if error.status == .notFound {
      return jsonResponse(
        "{\"error\": " + JSONText.quoted("no such endpoint: \(request.uri.path)") + "}", status: .notFound)
    }
    let message = error.body ?? error.status.reasonPhrase
    return jsonResponse(
      "{\"error\": " + JSONText.quoted(message) + "}", status: error.status, headers: error.headers)
  }
}
