import Foundation
import XCTest

@testable import CaptionKit

/// `Captioner.caption(images:options:)`: images with different options captioned in one batch get
/// the captions they get alone.
final class BatchedCaptionTests: XCTestCase {
  func testMixedOptionsInOneBatchGiveTheLoneCaptions() throws {
    BLAS.setThreads(1)
    let captioner = try Captioner(modelPath: packageRoot + "/models/shapes.safetensors")
    let folder = packageRoot + "/datasets/shapes/sample/images"
    let paths = try FileManager.default.contentsOfDirectory(atPath: folder).sorted().prefix(6).map {
      folder + "/" + $0
    }
    var greedy = DecodingOptions()
    greedy.beamSize = 1
    let beam = DecodingOptions()  // beam 3
    var sampled = DecodingOptions()
    sampled.sample = true
    sampled.temperature = 1.5
    sampled.seed = 7
    var short = DecodingOptions()
    short.maxLength = 4
    short.blockRepeatedTrigrams = true
    // the same sampling options twice in one batch: each image keeps its own stream 0
    let choices = [sampled, greedy, sampled, beam, short, sampled]
    let images = try paths.map { try captioner.load(path: $0) }
    let together = captioner.caption(images: images, options: choices)
    XCTAssertEqual(together.count, images.count)
    for (index, path) in paths.enumerated() {
      let alone = captioner.caption(paths: [path], options: choices[index], batchSize: 1)
      let expected = try alone[0].get()
      XCTAssertEqual(together[index].tokens, expected.tokens, path)
      XCTAssertEqual(together[index].logprob, expected.logprob, accuracy: 1e-5, path)
    }
  }

  func testImageStreamsReplaceTheOffsets() throws {
    let captioner = try Captioner(modelPath: packageRoot + "/models/shapes.safetensors")
    let image = try captioner.load(path: packageRoot + "/datasets/shapes/sample/images/000000.png")
    var options = DecodingOptions()
    options.sample = true
    options.temperature = 3
    options.seed = 11
    var shifted = options
    shifted.streamOffset = 5
    let vectors = captioner.encode([image, image])
    var streams = options
    streams.imageStreams = [5, 5]
    let both = CaptionDecoder.decode(model: captioner.model, imageVectors: vectors, options: streams)
    let alone = CaptionDecoder.decode(
      model: captioner.model, imageVectors: captioner.encode([image]), options: shifted)
    XCTAssertEqual(both[0].tokens, alone[0].tokens)
    XCTAssertEqual(both[1].tokens, alone[0].tokens)
  }
}
