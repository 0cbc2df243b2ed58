import CaptionKit
import Foundation
import HTTPTypes

/// An answer other than 200: its status and the message of `{"error": MESSAGE}`.
struct ServeError: Error {
  var status: HTTPResponse.Status
  var message: String
  var headers: HTTPFields = [:]

  init(_ status: HTTPResponse.Status, _ message: String, headers: HTTPFields = [:]) {
    self.status = status
    self.message = message
    self.headers = headers
  }
}

/// The query and body of `POST /v1/captions`.
enum CaptionRequest {
  /// The widest beam and the longest caption a request may ask for (each request's work is bounded).
  static let maximumBeam = 20
  static let maximumLength = 100

  /// `describe`'s decoding options from query parameters (`beam`, `max_length`, `sample`,
  /// `temperature`, `top_k`, `seed`, `forbid_unk`, `block_trigrams`, `rerank`, `rerank_weight`),
  /// with `describe`'s defaults and rules: `rerank=N` decodes with beam N (another `beam` or
  /// `sample` is refused) and `rerank_weight` needs it. A flag is true when given bare or as
  /// `true`/`1`, false as `false`/`0`. An unknown, repeated or bad parameter is a 400. A `rerank`
  /// without `rerank_weight` leaves λ nil: the model's, resolved by the caller.
  static func options(query: [(name: String, value: String)]) throws -> DecodingOptions {
    var options = DecodingOptions()
    options.seed = 1  // describe's --seed default
    var beam: Int?
    var seen: Set<String> = []
    for (name, value) in query {
      guard seen.insert(name).inserted else { throw bad("parameter \(name) is given more than once") }
      switch name {
      case "beam": beam = try integer(name, value, in: 1...maximumBeam)
      case "rerank": options.rerank = try integer(name, value, in: 1...maximumBeam)
      case "rerank_weight":
        guard let weight = Double(value), weight.isFinite, weight >= 0 else {
          throw bad("rerank_weight must be a number ≥ 0, got \(value)")
        }
        options.rerankWeight = weight
      case "max_length": options.maxLength = try integer(name, value, in: 1...maximumLength)
      case "top_k": options.topK = try integer(name, value, in: 0...Int(Int32.max))
      case "seed":
        guard let seed = UInt64(value) else {
          throw bad("seed must be an integer from 0 to 2^64-1, got \(value)")
        }
        options.seed = seed
      case "temperature":
        guard let t = Double(value), t.isFinite, t > 0, t <= 1000 else {
          throw bad("temperature must be a number above 0 (at most 1000), got \(value)")
        }
        options.temperature = t
      case "sample": options.sample = try flag(name, value)
      case "forbid_unk": options.forbidUnk = try flag(name, value)
      case "block_trigrams": options.blockRepeatedTrigrams = try flag(name, value)
      default:
        throw bad(
          "unknown parameter \(name); known: beam, max_length, sample, temperature, top_k, seed, forbid_unk, "
            + "block_trigrams, rerank, rerank_weight")
      }
    }
    options.beamSize = beam ?? (options.rerank > 0 ? options.rerank : options.beamSize)
    if options.rerank > 0 {
      guard !options.sample else {
        throw bad("rerank reranks beam candidates and cannot be used with sample")
      }
      guard options.beamSize == options.rerank else {
        throw bad(
          "rerank=\(options.rerank) decodes with beam \(options.rerank), not beam=\(options.beamSize)")
      }
    } else if options.rerankWeight != nil {
      throw bad("rerank_weight needs rerank=N")
    }
    return options
  }

  /// The query string's `name=value` pairs, percent-decoded (`+` is a space).
  static func queryPairs(_ query: String?) throws -> [(name: String, value: String)] {
    guard let query, !query.isEmpty else { return [] }
    var pairs: [(name: String, value: String)] = []
    for item in query.split(separator: "&", omittingEmptySubsequences: true) {
      let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      func decode(_ text: Substring) throws -> String {
        guard let decoded = text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding else {
          throw bad("the query is not valid percent-encoded UTF-8")
        }
        return decoded
      }
      pairs.append((try decode(parts[0]), parts.count > 1 ? try decode(parts[1]) : ""))
    }
    return pairs
  }

  /// The media types a body may have (with no Content-Type the body is taken as bytes).
  static let imageTypes: Set<String> = ["image/jpeg", "image/png", "application/octet-stream"]

  /// The image bytes of a body: the body itself for an image type, the field `image` of a
  /// `multipart/form-data` body. 415 for any other type.
  static func image(body: [UInt8], contentType: String?) throws -> [UInt8] {
    try checkContentType(contentType)
    let media = mediaType(contentType)
    if media == nil || imageTypes.contains(media!) { return body }
    guard let boundary = parameter("boundary", of: contentType!), !boundary.isEmpty else {
      throw bad("multipart/form-data without a boundary")
    }
    guard let field = Multipart.field(named: "image", in: body, boundary: boundary) else {
      throw bad("the multipart body has no field named image")
    }
    return field
  }

  /// A 415 unless a body of this Content-Type can carry an image (checked before the body is read).
  static func checkContentType(_ contentType: String?) throws {
    guard let media = mediaType(contentType), !imageTypes.contains(media), media != "multipart/form-data"
    else { return }
    throw ServeError(
      .unsupportedMediaType,
      "the body must be an image (image/jpeg, image/png or application/octet-stream) or "
        + "multipart/form-data with a field named image, not \(media)")
  }

  /// `type/subtype` of a Content-Type, lower-cased, parameters dropped; nil when absent or empty.
  static func mediaType(_ contentType: String?) -> String? {
    guard let contentType else { return nil }
    let media = contentType.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)[0]
      .trimmingCharacters(in: .whitespaces).lowercased()
    return media.isEmpty ? nil : media
  }

  /// A parameter of a header value (`boundary=...`, quoted or not).
  static func parameter(_ name: String, of header: String) -> String? {
    for part in header.split(separator: ";").dropFirst() {
      let pair = part.split(separator: "=", maxSplits: 1)
      guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == name else {
        continue
      }
      var value = pair[1].trimmingCharacters(in: .whitespaces)
      if value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") {
        value = String(value.dropFirst().dropLast())
      }
      return value
    }
    return nil
  }

  /// The answer to a decoder's error: 415 when the bytes are no JPEG or PNG, 422 when they are one
  /// that cannot be decoded or is over the pixel budget.
  static func decodeError(_ error: CaptionError) -> ServeError {
    if error.kind == .unsupportedFormat {
      return ServeError(.unsupportedMediaType, error.reason)
    }
    return ServeError(.unprocessableContent, error.reason)
  }

  private static func integer(_ name: String, _ value: String, in range: ClosedRange<Int>) throws -> Int {
    guard let number = Int(value), range.contains(number) else {
      throw bad("\(name) must be an integer from \(range.lowerBound) to \(range.upperBound), got \(value)")
    }
    return number
  }

  private static func flag(_ name: String, _ value: String) throws -> Bool {
    switch value.lowercased() {
    case "", "true", "1": return true
    case "false", "0": return false
    default: throw bad("\(name) must be true or false, got \(value)")
    }
  }

  private static func bad(_ message: String) -> ServeError { ServeError(.badRequest, message) }
}

/// The one part of `multipart/form-data` (RFC 7578) the server reads: a field's bytes.
enum Multipart {
  /// The content of the first part whose Content-Disposition names `name`; nil when there is none
  /// or the body is not well formed.
  static func field(named name: String, in body: [UInt8], boundary: String) -> [UInt8]? {
    let delimiter = Array(("--" + boundary).utf8)
    let headerEnd: [UInt8] = [13, 10, 13, 10]
    guard var start = find(delimiter, in: body, from: 0) else { return nil }
    while true {
      let afterDelimiter = start + delimiter.count
      // "--" after a delimiter ends the body
      if body.count >= afterDelimiter + 2 && body[afterDelimiter] == 45 && body[afterDelimiter + 1] == 45 {
        return nil
      }
      guard let headersEnd = find(headerEnd, in: body, from: afterDelimiter) else { return nil }
      let headers = String(decoding: body[afterDelimiter..<headersEnd], as: UTF8.self)
      let contentStart = headersEnd + headerEnd.count
      guard let next = find([13, 10] + delimiter, in: body, from: contentStart) else { return nil }
      if names(headers, name) { return Array(body[contentStart..<next]) }
      start = next + 2
    }
  }

  private static func names(_ headers: String, _ name: String) -> Bool {
    for line in headers.split(whereSeparator: \.isNewline) {
      let lower = line.lowercased()
      guard lower.hasPrefix("content-disposition:") else { continue }
      let value = String(line.dropFirst("content-disposition:".count))
      return CaptionRequest.parameter("name", of: value) == name
    }
    return false
  }

  /// The first index of `needle` in `haystack` at or after `from`.
  private static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
    guard !needle.isEmpty, haystack.count >= needle.count, from <= haystack.count - needle.count else {
      return nil
    }
    let first = needle[0]
    var index = from
    let last = haystack.count - needle.count
    while index <= last {
      if haystack[index] == first && haystack[index..<index + needle.count].elementsEqual(needle) {
        return index
      }
      index += 1
    }
    return nil
  }
}
