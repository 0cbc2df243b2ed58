/// 2×2 max-pool, stride 2 (SPEC §3 `M`): [B, C, H, W] → [B, C, H/2, W/2], odd sizes floored
/// (the last row or column is dropped, as PyTorch's `MaxPool2d(2)` does).
/// Backward routes each gradient to its window's argmax; ties go to the first in row-major order.
public final class MaxPool2D {
  private var inputShape: [Int] = []
  private var output: Tensor?  // [B, C, H/2, W/2]
  private var inputGrad: Tensor?  // [B, C, H, W]
  /// For each output element, the index of its argmax inside the input plane.
  private(set) var argmax: [Int32] = []

  public init() {}

  public var parameters: [Parameter] { [] }

  /// input [B, C, H, W] → output [B, C, H/2, W/2] (this layer's workspace).
  public func forward(_ input: Tensor) -> Tensor {
    precondition(input.shape.count == 4, "MaxPool2D: input \(input.shape), expected [B, C, H, W]")
    let output = reuseWorkspace(&self.output, shape: MaxPool2D.outputShape(input.shape))
    forward(input, into: output)
    return output
  }

  /// [B, C, H, W] → [B, C, H/2, W/2].
  public static func outputShape(_ inputShape: [Int]) -> [Int] {
    [inputShape[0], inputShape[1], inputShape[2] / 2, inputShape[3] / 2]
  }

  /// As `forward(_:)`, writing into `output` (not overlapping `input`), a buffer the caller owns.
  public func forward(_ input: Tensor, into output: Tensor) {
    precondition(input.shape.count == 4, "MaxPool2D: input \(input.shape), expected [B, C, H, W]")
    precondition(
      output.shape == MaxPool2D.outputShape(input.shape),
      "MaxPool2D: output \(output.shape) for input \(input.shape)")
    let (height, width) = (input.shape[2], input.shape[3])
    let (outHeight, outWidth) = (height / 2, width / 2)
    inputShape = input.shape
    let planes = input.shape[0] * input.shape[1]
    if argmax.count != output.count { argmax = [Int32](repeating: 0, count: output.count) }
    argmax.withUnsafeMutableBufferPointer { argmax in
      let argmax = UncheckedSendable(argmax.baseAddress!)
      Parallel.forRanges(planes) { planeRange in
        for plane in planeRange {
          let source = input.pointer + plane * height * width
          let target = output.pointer + plane * outHeight * outWidth
          let indices = argmax.value + plane * outHeight * outWidth
          // 8 windows at once, branch-free (random data mispredicts the scalar compares):
          // lanes are neighbouring windows, the 4 candidates deinterleaved from two rows.
          let vectorColumns = outWidth / 8 * 8
          for oy in 0..<outHeight {
            for ox in stride(from: 0, to: vectorColumns, by: 8) {
              let topLeft = 2 * oy * width + 2 * ox
              let top = UnsafeRawPointer(source + topLeft).loadUnaligned(as: SIMD16<Float>.self)
              let bottom = UnsafeRawPointer(source + topLeft + width).loadUnaligned(as: SIMD16<Float>.self)
              var best = top.evenHalf
              var offset = SIMD8<Int32>(repeating: 0)
              // Row-major window order; strict > keeps the first of equal values.
              @inline(__always) func consider(_ candidate: SIMD8<Float>, _ position: Int32) {
                let better = candidate .> best
                best.replace(with: candidate, where: better)
                offset.replace(with: position, where: better)
              }
              consider(top.oddHalf, 1)
              consider(bottom.evenHalf, Int32(width))
              consider(bottom.oddHalf, Int32(width + 1))
              UnsafeMutableRawPointer(target + oy * outWidth + ox).storeBytes(of: best, as: SIMD8<Float>.self)
              let base = SIMD8<Int32>(repeating: Int32(topLeft)) &+ SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14)
              UnsafeMutableRawPointer(indices + oy * outWidth + ox).storeBytes(
                of: base &+ offset, as: SIMD8<Int32>.self)
            }
            for ox in vectorColumns..<outWidth {
              let topLeft = 2 * oy * width + 2 * ox
              // Row-major window order; strict > keeps the first of equal values. Selects, not
              // branches (an 8-px map has no vector of windows, and its compares mispredict).
              var (best, index) = (source[topLeft], topLeft)
              @inline(__always) func consider(_ candidate: Int) {
                let better = source[candidate] > best
                best = better ? source[candidate] : best
                index = better ? candidate : index
              }
              consider(topLeft + 1)
              consider(topLeft + width)
              consider(topLeft + width + 1)
              target[oy * outWidth + ox] = best
              indices[oy * outWidth + ox] = Int32(index)
            }
          }
        }
      }
    }
  }

  /// dL/dinput: each output gradient added at its argmax, zero elsewhere.
  public func backward(_ outputGrad: Tensor) -> Tensor {
    precondition(!inputShape.isEmpty, "MaxPool2D.backward before forward")
    let outputShape = MaxPool2D.outputShape(inputShape)
    precondition(
      outputGrad.shape == outputShape, "MaxPool2D.backward: \(outputGrad.shape) vs \(outputShape)")
    let inputGrad = reuseWorkspace(&self.inputGrad, shape: inputShape)
    let planeIn = inputShape[2] * inputShape[3]
    let planeOut = outputShape[2] * outputShape[3]
    let planes = inputShape[0] * inputShape[1]
    argmax.withUnsafeBufferPointer { argmax in
      let argmax = UncheckedSendable(argmax.baseAddress!)
      Parallel.forRanges(planes) { planeRange in
        for plane in planeRange {
          let target = inputGrad.pointer + plane * planeIn
          target.update(repeating: 0, count: planeIn)
          let source = outputGrad.pointer + plane * planeOut
          let indices = argmax.value + plane * planeOut
          for o in 0..<planeOut { target[Int(indices[o])] += source[o] }
        }
      }
    }
    return inputGrad
  }
}

/// Global average pool: [B, C, H, W] → [B, C], the mean over each plane (SPEC §3 pool `avg`).
public final class GlobalAvgPool {
  private var inputShape: [Int] = []
  private var output: Tensor?  // [B, C]
  private var inputGrad: Tensor?  // [B, C, H, W]

  public init() {}

  public var parameters: [Parameter] { [] }

  public func forward(_ input: Tensor) -> Tensor {
    precondition(input.shape.count == 4, "GlobalAvgPool: input \(input.shape), expected [B, C, H, W]")
    inputShape = input.shape
    let pixels = input.shape[2] * input.shape[3]
    let output = reuseWorkspace(&self.output, shape: [input.shape[0], input.shape[1]])
    for plane in 0..<output.count {
      output[plane] = Elementwise.mean(input.pointer + plane * pixels, count: pixels)
    }
    return output
  }

  /// dL/dinput[b, c, y, x] = dL/doutput[b, c] / (H·W).
  public func backward(_ outputGrad: Tensor) -> Tensor {
    precondition(outputGrad.count == inputShape[0] * inputShape[1], "GlobalAvgPool.backward: shape")
    let inputGrad = reuseWorkspace(&self.inputGrad, shape: inputShape)
    let pixels = inputShape[2] * inputShape[3]
    for plane in 0..<outputGrad.count {
      (inputGrad.pointer + plane * pixels).update(
        repeating: outputGrad[plane] / Float(pixels), count: pixels)
    }
    return inputGrad
  }
}

/// ReLU as its own layer (the encoder's convs fuse it instead): y = max(x, 0).
public final class ReLU {
  private var output: Tensor?
  private var inputGrad: Tensor?

  public init() {}

  public var parameters: [Parameter] { [] }

  public func forward(_ input: Tensor) -> Tensor {
    let output = reuseWorkspace(&self.output, shape: input.shape)
    for i in 0..<input.count { output.pointer[i] = max(input.pointer[i], 0) }
    return output
  }

  /// dL/dx = dL/dy where y > 0, else 0.
  public func backward(_ outputGrad: Tensor) -> Tensor {
    guard let output = output else { preconditionFailure("ReLU.backward before forward") }
    precondition(outputGrad.count == output.count, "ReLU.backward: shape")
    let inputGrad = reuseWorkspace(&self.inputGrad, shape: output.shape)
    for i in 0..<output.count {
      inputGrad.pointer[i] = output.pointer[i] > 0 ? outputGrad.pointer[i] : 0
    }
    return inputGrad
  }
}
