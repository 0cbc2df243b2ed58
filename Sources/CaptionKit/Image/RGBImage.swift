/// An 8-bit RGB image, rows top to bottom, pixels interleaved `R G B`.
public struct RGBImage: Equatable, Sendable {
  public var width: Int
  public var height: Int
  /// `height * width * 3` bytes.
  public var pixels: [UInt8]

  public init(width: Int, height: Int, pixels: [UInt8]) {
    precondition(pixels.count == width * height * 3, "RGBImage: pixel count does not match size")
    self.width = width
    self.height = height
    self.pixels = pixels
  }

  /// A black image.
  public init(width: Int, height: Int) {
    self.init(width: width, height: height, pixels: [UInt8](repeating: 0, count: width * height * 3))
  }
}
