import ArgumentParser
import CaptionKit
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

@main
struct ServeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "caption serve",
    abstract: "Caption images over HTTP (SPEC §10).",
    usage: "caption serve [--model <model>] [--port <port>] [<options>]",
    discussion: """
      Loads the model once and answers POST /v1/captions (the body is the image), GET /v1/model,
      /healthz, /readyz, /metrics, and a page at / to try it in a browser. Concurrent requests are
      captioned together in batches. With --index, GET /v1/search?q=TEXT&top=K searches an image
      index made by `caption index` with the same model. SIGTERM or SIGINT stops it gracefully (exit 0).

      Examples:
        caption serve
        caption serve --port 9000 --max-batch 32 --threads 2
        caption serve --index examples.index
        curl -H 'Content-Type: image/png' --data-binary @photo.png localhost:8080/v1/captions
      """)

  @Option(help: "The model file (default: as describe finds it).") var model: String?
  @Option(help: "The address to listen on.") var host: String = "127.0.0.1"
  @Option(help: "The port to listen on (0: any free port).") var port: Int = 8080
  @Option(help: "Images captioned together at most.") var maxBatch: Int = 16
  @Option(help: "Milliseconds a waiting image may wait for others to join its batch.") var maxDelay: Int = 5
  @Option(help: "Caption requests admitted at once; more are answered 503.") var queue: Int = 64
  @Option(help: "The largest request body, in MB.") var maxBodyMb: Int = 20
  @Option(help: "The most pixels an uploaded image may have.") var maxPixels: Int = 16_777_216
  @Option(help: "Seconds before a silent connection or an unfinished body is dropped.")
  var idleTimeout: Double = 30
  @Option(help: "Compute threads for the model.") var threads: Int = 1
  @Option(help: "Threads that decode uploaded images.") var decoders: Int = 2
  @Option(help: "An image index (`caption index`, same model) that GET /v1/search searches.") var index:
    String?

  func validate() throws {
    guard (0...65535).contains(port) else { throw ValidationError("--port must be from 0 to 65535") }
    for (name, value, range) in [
      ("max-batch", maxBatch, 1...256), ("max-delay", maxDelay, 0...10_000), ("queue", queue, 1...100_000),
      ("max-body-mb", maxBodyMb, 1...1024), ("max-pixels", maxPixels, 1...1_000_000_000),
      ("threads", threads, 1...256), ("decoders", decoders, 1...256),
    ] where !range.contains(value) {
      throw ValidationError("--\(name) must be from \(range.lowerBound) to \(range.upperBound)")
    }
    guard idleTimeout.isFinite, idleTimeout > 0, idleTimeout <= 86_400 else {
      throw ValidationError("--idle-timeout must be a number of seconds above 0")
    }
  }

  func run() async throws {
    var settings = ServeSettings()
    settings.host = host
    settings.port = port
    settings.maxBatch = maxBatch
    settings.maxDelayMilliseconds = maxDelay
    settings.queue = queue
    settings.maxBodyBytes = maxBodyMb << 20
    settings.maxPixels = maxPixels
    settings.idleTimeout = idleTimeout
    settings.threads = threads
    settings.decoders = decoders

    if let problem = PeakFlops.forceFromEnvironment() {
      printError(problem)
      throw ExitCode(1)
    }
    let captioner: Captioner
    let modelPath: String
    var search: ImageSearch? = nil
    do {
      modelPath = try ModelLocator.locate(explicit: model)
      captioner = try Captioner(modelPath: modelPath, decoder: ImageDecoder(maxPixels: maxPixels))
      if let index { search = try ImageSearch(indexPath: index, modelPath: modelPath, capacity: queue) }
    } catch let error as CaptionError {
      printError(error.description)
      throw ExitCode(1)
    }
    BLAS.setThreads(threads)

    let started = Atomic<Bool>(false)
    let (host, port) = (settings.host, settings.port)
    let searching = search.map { ", index \(index!) of \($0.count) images" } ?? ""
    let app = buildApplication(captioner: captioner, modelPath: modelPath, settings: settings, search: search)
    {
      channel in
      started.store(true, ordering: .relaxed)
      let address = channel.localAddress
      let shown = "http://\(address?.ipAddress ?? host):\(address?.port ?? port)"
      FileHandle.standardOutput.write(
        Data("caption-serve: listening on \(shown) (model \(modelPath)\(searching))\n".utf8))
    }
    var logger = Logger(label: "caption-serve")
    logger.logLevel = .warning
    var group = ServiceGroupConfiguration(
      services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    // requests still running when a stop is asked for get 3 s to finish, then 1 s to be cancelled
    group.maximumGracefulShutdownDuration = .seconds(3)
    group.maximumCancellationDuration = .seconds(1)
    do {
      try await ServiceGroup(configuration: group).run()
    } catch {
      guard started.load(ordering: .relaxed) else {
        printError("cannot listen on \(host):\(port): \(error)")
        throw ExitCode(1)
      }
      // stopped by a signal, with requests that had to be cancelled: still a clean stop
    }
  }
}

func printError(_ line: String) {
  FileHandle.standardError.write(Data(("caption-serve: " + line + "\n").utf8))
}
