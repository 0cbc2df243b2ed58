import Foundation
import XCTest

@testable import CaptionKit

/// Encoder files (SPEC §3a): torchvision VGG safetensors in its own names, `caption` encoder files,
/// `caption` models; the fixtures come from scripts/make_vgg_fixture.py.
final class EncoderFileTests: XCTestCase {
  private let tinyLayers = EncoderLayer.parseList("4,M,8,8,M,8,M")!

  private func assertRefused(
    _ path: String, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertThrowsError(try EncoderFile.load(path: path), file: file, line: line) { error in
      guard let error = error as? CaptionError else {
        return XCTFail("not a CaptionError: \(error)", file: file, line: line)
      }
      XCTAssertEqual(error.path, path, file: file, line: line)
      XCTAssertFalse(error.description.contains("\n"), file: file, line: line)
      for fragment in fragments {
        XCTAssertTrue(
          error.reason.contains(fragment), "\(error.reason) lacks \(fragment)", file: file, line: line)
      }
    }
  }

  /// The layer list comes from the conv indices (0, 3, 5, 8: pools at 2, 7 and after the last),
  /// the classifier's bytes are not read, and the weights are the file's own.
  func testTorchvisionNamesGiveTheLayerListAndTheWeights() throws {
    let path = fixturePath("vgg/tiny_vgg.safetensors")
    let encoder = try EncoderFile.load(path: path)
    XCTAssertEqual(encoder.source, .torchvision)
    XCTAssertEqual(encoder.layers, tinyLayers)
    XCTAssertEqual(encoder.imageSize, 224)
    XCTAssertEqual(encoder.mean, Preprocess.imagenetMean)
    XCTAssertEqual(encoder.std, Preprocess.imagenetStd)
    let raw = try Safetensors.read(path: path)
    for (k, index) in [0, 3, 5, 8].enumerated() {
      XCTAssertEqual(encoder.convolutions[k].weight.array, raw.tensors["features.\(index).weight"]!.array)
      XCTAssertEqual(encoder.convolutions[k].bias.array, raw.tensors["features.\(index).bias"]!.array)
    }
    let selective = try Safetensors.read(path: path) { $0.hasPrefix("features.") }
    XCTAssertEqual(selective.skipped.sorted(), ["classifier.0.bias", "classifier.0.weight"])
    XCTAssertNil(selective.tensors["classifier.0.weight"])
    XCTAssertNil(encoder.torchvisionName)
  }

  /// On a real photo, the encoder built from the torchvision file gives what a direct Double-loop
  /// convolution, ReLU and 2×2 max-pool give with the same weights.
  func testFeaturesOfAPhotoMatchTheReference() throws {
    let file = try EncoderFile.load(path: fixturePath("vgg/tiny_vgg.safetensors"))
    let size = 24
    let photo = try Preprocess.load(path: try corpusFile("exif/Landscape_1.jpg"), size: size)
    let input = Preprocess.batch([photo], mean: file.mean, std: file.std)  // [1, 3, 24, 24]
    let features = file.makeEncoder(imageSize: size).features(input)
    XCTAssertEqual(features.shape, [1, 8, 3, 3])

    var x = input
    var k = 0
    for layer in file.layers {
      switch layer {
      case .conv:
        x = referenceConvolution(
          input: x, weight: file.convolutions[k].weight, bias: file.convolutions[k].bias, relu: true)
        k += 1
      case .maxPool:
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2] / 2, x.shape[3] / 2)
        var pooled = [Float](repeating: 0, count: b * c * h * w)
        for plane in 0..<(b * c) {
          for y in 0..<h {
            for xx in 0..<w {
              var m = -Float.infinity
              for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                m = max(m, x[(plane * x.shape[2] + 2 * y + dy) * x.shape[3] + 2 * xx + dx])
              }
              pooled[(plane * h + y) * w + xx] = m
            }
          }
        }
        x = Tensor(shape: [b, c, h, w], values: pooled)
      }
    }
    XCTAssertGreaterThan(x.array.map { Double($0) }.reduce(0, +), 0)  // not all zero after the ReLUs
    XCTAssertLessThan(relativeL2Error(features.array, x.array.map { Double($0) }), 1e-4)
  }

  /// A `caption` encoder file written and read back; a model file's encoder read as one.
  func testEncoderAndModelFilesRoundTrip() throws {
    let torchvision = try EncoderFile.load(path: fixturePath("vgg/tiny_vgg.safetensors"))
    let folder = temporaryFolder()
    var saved = torchvision
    saved.imageSize = 32
    saved.mean = [0.5, 0.5, 0.5]
    try saved.save(path: folder + "/tiny.encoder.safetensors")
    let back = try EncoderFile.load(path: folder + "/tiny.encoder.safetensors")
    XCTAssertEqual(back.source, .encoder)
    XCTAssertEqual(back.layers, tinyLayers)
    XCTAssertEqual(back.imageSize, 32)
    XCTAssertEqual(back.mean, [0.5, 0.5, 0.5])
    XCTAssertEqual(
      back.convolutions.map { $0.weight.array }, torchvision.convolutions.map { $0.weight.array })

    let config = ModelConfig(imageSize: 40, layers: tinyLayers, dv: 6, embed: 5, hidden: 7, vocabSize: 6)
    let model = CaptionModel(config: config)
    var generator = SeededGenerator(seed: 3)
    model.initialize(using: &generator)
    let modelFile = ModelFile(
      config: config, vocabulary: Vocabulary(specialsAnd: ["a", "b"]), mean: [0.1, 0.2, 0.3],
      tensors: Dictionary(uniqueKeysWithValues: model.namedTensors.map { ($0.name, $0.tensor) }))
    try modelFile.save(path: folder + "/model.safetensors")
    let fromModel = try EncoderFile.load(path: folder + "/model.safetensors")
    XCTAssertEqual(fromModel.source, .model)
    XCTAssertEqual(fromModel.layers, tinyLayers)
    XCTAssertEqual(fromModel.imageSize, 40)
    XCTAssertEqual(fromModel.mean, [0.1, 0.2, 0.3])
    XCTAssertEqual(fromModel.convolutions[2].weight.array, model.encoder.convolutions[2].weight.value.array)
  }

  /// `caption features` writes the normalised input and the feature map; a bad encoder file is
  /// exit 1 and one line naming it.
  func testFeaturesCommandWritesTheFeatureMap() throws {
    let folder = temporaryFolder()
    let photo = try corpusFile("exif/Portrait_6.jpg")
    let run = try runCaption([
      "features", photo, "--encoder", fixturePath("vgg/tiny_vgg.safetensors"), "--image-size", "16", "--out",
      folder + "/f.safetensors",
    ])
    XCTAssertEqual(run.status, 0, run.stderr)
    let written = try Safetensors.read(path: folder + "/f.safetensors")
    let input = try XCTUnwrap(written.tensors["input"])
    XCTAssertEqual(input.shape, [1, 3, 16, 16])
    let file = try EncoderFile.load(path: fixturePath("vgg/tiny_vgg.safetensors"))
    XCTAssertEqual(written.tensors["features"]?.shape, [1, 8, 2, 2])
    XCTAssertEqual(written.tensors["features"]?.array, file.makeEncoder(imageSize: 16).features(input).array)

    let bad = fixturePath("vgg/tiny_resnet.safetensors")
    let refused = try runCaption(["features", photo, "--encoder", bad, "--out", folder + "/g.safetensors"])
    XCTAssertEqual(refused.status, 1)
    XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
    XCTAssertTrue(refused.stderr.hasPrefix("caption: \(bad): not a torchvision VGG"), refused.stderr)
  }

  /// A torchvision file with a value that is not finite in a convolution is refused, naming it.
  func testNonFiniteWeightsAreRefused() throws {
    let raw = try Safetensors.read(path: fixturePath("vgg/tiny_vgg.safetensors"))
    raw.tensors["features.3.bias"]![1] = .nan
    let path = temporaryFolder() + "/nan.safetensors"
    try Safetensors.write(
      path: path, tensors: raw.tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
      metadata: raw.metadata)
    assertRefused(path, ["tensor \"features.3.bias\"", "not finite"])
  }

  func testOtherNetworksAreRefusedInOneLine() throws {
    assertRefused(fixturePath("vgg/tiny_vgg_bn.safetensors"), ["batch norm", "features.1."])
    assertRefused(fixturePath("vgg/tiny_resnet.safetensors"), ["not a torchvision VGG", "ResNet"])

    // conv at 0 and 5: four modules between them is not VGG's pattern.
    let folder = temporaryFolder()
    let gap = folder + "/gap.safetensors"
    try Safetensors.write(
      path: gap,
      tensors: [
        ("features.0.weight", Tensor(zeros: [4, 3, 3, 3])), ("features.0.bias", Tensor(zeros: [4])),
        ("features.5.weight", Tensor(zeros: [4, 4, 3, 3])), ("features.5.bias", Tensor(zeros: [4])),
      ], metadata: [:])
    assertRefused(gap, ["features.0 and features.5 are 5 apart"])

    // What torch.save writes (a zip archive) is named as such.
    let pth = folder + "/vgg16.pth"
    try Data([0x50, 0x4B, 0x03, 0x04] + [UInt8](repeating: 7, count: 60)).write(to: URL(fileURLWithPath: pth))
    assertRefused(pth, ["PyTorch checkpoint", "import_torchvision_vgg.py"])

    // A caption encoder file whose tensors do not fit its layer list.
    let mismatched = folder + "/mismatched.safetensors"
    try Safetensors.write(
      path: mismatched,
      tensors: [
        ("encoder.conv0.weight", Tensor(zeros: [4, 3, 3, 3])), ("encoder.conv0.bias", Tensor(zeros: [4])),
      ],
      metadata: [
        "format": "caption-encoder", "version": "1", "layers": "[8, \"M\"]",
        "preprocess": "{\"image_size\": 224, \"mean\": [0.4, 0.4, 0.4], \"std\": [0.2, 0.2, 0.2]}",
      ])
    assertRefused(mismatched, ["encoder.conv0.weight", "[4, 3, 3, 3]", "[8, 3, 3, 3]"])
  }
}
