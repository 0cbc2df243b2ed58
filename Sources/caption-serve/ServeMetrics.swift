import Foundation
import Prometheus

/// What `GET /metrics` reports, in Prometheus's text format (swift-prometheus writes it).
final class ServeMetrics: Sendable {
  let registry = PrometheusCollectorRegistry()
  let queueDepth: Gauge
  let batchSize: ValueHistogram
  let imagesCaptioned: Counter

  init() {
    queueDepth = registry.makeGauge(
      descriptor: Self.name("caption_queue_depth", "Caption requests admitted and not yet answered."))
    batchSize = registry.makeValueHistogram(
      descriptor: Self.name("caption_batch_size", "Images captioned together in one encoder pass."),
      buckets: [1, 2, 4, 8, 16, 32, 64])
    imagesCaptioned = registry.makeCounter(
      descriptor: Self.name("caption_images_captioned_total", "Images captioned since the server started."))
  }

  /// Counts one answered request and its duration, by endpoint (the route, or `unmatched`).
  func record(endpoint: String, status: Int, duration: Duration) {
    registry.makeCounter(
      descriptor: Self.name("caption_http_requests_total", "HTTP requests answered, by endpoint and status."),
      labels: [("endpoint", endpoint), ("status", String(status))]
    ).increment()
    registry.makeDurationHistogram(
      descriptor: Self.name(
        "caption_http_request_duration_seconds", "Time from the request's head to its response, by endpoint."),
      labels: [("endpoint", endpoint)], buckets: Self.durationBuckets
    ).record(duration)
  }

  private static func name(_ name: String, _ help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
  }

  static let durationBuckets: [Duration] = [
    .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
    .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
    .seconds(2.5), .seconds(5), .seconds(10),
  ]

  /// The text of `GET /metrics`.
  func text() -> String { registry.emitToString() }
}
