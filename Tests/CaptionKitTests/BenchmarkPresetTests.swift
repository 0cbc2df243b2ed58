import XCTest

@testable import CaptionKit

/// `caption bench --preset` (SPEC §7): each preset is the configuration its name says.
final class BenchmarkPresetTests: XCTestCase {
  func testPresetsAreTheNamedConfigurations() throws {
    let standard = BenchmarkPreset.standard.options(forwardOnly: false)
    XCTAssertEqual(standard.imageSize, BenchmarkOptions().imageSize)
    XCTAssertEqual(standard.layers, BenchmarkOptions().layers)
    XCTAssertEqual(standard.batch, 32)

    let standard128 = BenchmarkPreset.standard128.options(forwardOnly: false)
    XCTAssertEqual(standard128.imageSize, 128)
    XCTAssertEqual(standard128.layers, BenchmarkOptions().layers)

    let vgg16 = BenchmarkPreset.vgg16.options(forwardOnly: false)
    XCTAssertEqual(vgg16.imageSize, 224)
    XCTAssertEqual(vgg16.layers.filter { $0 != .maxPool }.count, 13, "VGG-16: 13 convolutions")
    XCTAssertEqual(vgg16.layers.filter { $0 == .maxPool }.count, 5)
    XCTAssertEqual(vgg16.batch, 8, "training at 224 px: batch 8")
    XCTAssertEqual(BenchmarkPreset.vgg16.options(forwardOnly: true).batch, 32, "feature extraction")

    let vgg11 = BenchmarkPreset.vgg11.options(forwardOnly: false)
    XCTAssertEqual(vgg11.layers.filter { $0 != .maxPool }.count, 8, "VGG-11: 8 convolutions")
    XCTAssertEqual(vgg11.layers.first, .conv(64))

    for preset in BenchmarkPreset.allCases {
      XCTAssertNoThrow(try preset.options(forwardOnly: false).config.validate(), preset.rawValue)
    }
  }
}
