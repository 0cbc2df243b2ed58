import CKernels
import FoundationEssentials
import Glibc

// Winograd F(2×2, 3×3) for Conv2D (3×3, stride 1, pad 1), and F(4×4, 3×3) (Sources/CKernels/
// winograd4.c: 6×6 patches, 36 positions, the same stages) on the maps where it pays
// (`winogradTile(height:width:)`).
//
// Each output tile Y (2×2) comes from a 4×4 input patch d (rows 2ty−1…2ty+2, cols 2tx−1…2tx+2):
//   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A                                   (Lavin & Gray, 2015)
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
//   Aᵀ = [1 1 1 0; 0 1 −1 −1].
// Summed over input channels, the ⊙ becomes, for each of the 16 positions ξ of the 4×4 tile,
//   M[ξ] [Cout, T] = U[ξ] [Cout, Cin] · V[ξ] [Cin, T]      (T = tiles)
// with U = G g Gᵀ and V = Bᵀ d B. Backward is the adjoint of each linear stage:
//   dM = A dY Aᵀ;  dU[ξ] += dM[ξ] · V[ξ]ᵀ;  dV[ξ] = U[ξ]ᵀ · dM[ξ];
//   dd = B dV Bᵀ (scatter-added: neighbouring patches overlap);  dg = Gᵀ dU G.
// CKernels runs the input and output transforms and the products block by block
// (Conv2DBlocked.swift) and the weight transforms U = G g Gᵀ and dg = Gᵀ dU G; this file picks
// the tile and keeps U from the forward for its backward (and a loaded model's for good).

extension Conv2D {
  /// The Winograd tile of both passes on an H×W map: 4, F(4×4, 3×3) (36 multiplies per 16
  /// outputs), or 2, F(2×2, 3×3) (16 per 4). The transforms run on 16 tiles at a time in tile
  /// order, so narrow rows of tiles waste no lanes; F(4×4) then pays on every map of at least 12,
  /// and below that its 2 × 2 or 3 × 3 tiles per image leave most of a product's 16 columns empty
  /// at one image. Measured times, F(4×4) against F(2×2), one thread, AVX-512 and AVX2 (Zen 4):
  /// forward 0.70–0.78× at 14–64 px (1 and 16 images), 0.62–0.75× at VGG-16's 28–224 px,
  /// 0.80–0.92× at 12 px, 1.06–1.21× at 10 px, 2.2× at 8 px for one image; backward 0.59–0.78× at
  /// 14–224 px, 0.88–1.06× at 8 px.
  func winogradTile(height: Int, width: Int) -> Int {
    if let forced = forcedTile { return forced }
    return Conv2D.defaultTile(height: height, width: width)
  }

  /// The Winograd tile on an H×W map unless forced: 4 from 12 px, else 2.
  static func defaultTile(height: Int, width: Int) -> Int { min(height, width) >= 12 ? 4 : 2 }

  /// U = G g Gᵀ for every kernel g = weight[co, ci] [3, 3] (CKernels): [positions, Cout, Cin] in
  /// strips of 16 input channels, [16 or 36, ⌈Cin / 16⌉, Cout + 1, 16] (ck_winograd_weights), which the
  /// forward reads and its backward reads as Uᵀ. Each forward computes it into the layer's own
  /// buffer (training changes the weights every step; a VGG-16 layer of 512 channels takes a few
  /// ms, so the threads share the kernels out), where the backward of that forward finds it
  /// (`backwardTransform`); with `weightsAreFixed`, once and kept (describe calls the encoder again
  /// and again). `onCallingThread` keeps it off the compute threads (the kernels are shared out in
  /// groups that are each computed whole, so the values are the same either way).
  func forwardTransform(tile: Int, onCallingThread: Bool = false) -> Tensor {
    if weightsAreFixed, let u = transforms[tile] { return u }
    let (cout, cin) = (outChannels, inChannels)
    let strips = (cin + 15) / 16
    let shape = [(tile + 2) * (tile + 2), strips, cout + 1, 16]
    let u = transforms[tile] ?? transformStorage?.nextView(shape: shape) ?? Tensor(zeros: shape)
    transforms[tile] = u
    // Groups of 16 kernels (one vector), at least `minimumKernelsPerThread` kernels to a thread.
    let transform = tile == 4 ? ck_winograd4_weights : ck_winograd_weights
    let weights = weight.value.pointer
    if onCallingThread {
      transform(weights, Int32(cout), Int32(cin), 0, Int32(cout * strips), u.pointer)
      return u
    }
    Parallel.forRanges(cout * strips, minimumPerPart: Conv2D.minimumKernelsPerThread / 16) { groups in
      transform(
        weights, Int32(cout), Int32(cin), Int32(groups.lowerBound), Int32(groups.upperBound), u.pointer)
    }
    return u
  }

  /// The floats of U at the largest tile, F(4×4)'s (`forwardTransform`).
  var largestTransformCount: Int { 36 * ((inChannels + 15) / 16) * (outChannels + 1) * 16 }

  /// The U its forward computed (`forwardTransform`), which the backward reads: the weights do not
  /// change between the two, and the forward's output is what the gradients are of. Computed now if
  /// no forward has run at this tile.
  func backwardTransform(tile: Int) -> Tensor { transforms[tile] ?? forwardTransform(tile: tile) }

  /// Below this many kernels a thread's share of a weight transform costs less than handing it out.
  static let minimumKernelsPerThread = 2048

  /// weight.grad += Gᵀ dU G, dU the sum of the threads' partial sums `uGrads` [parts][positions ×
  /// Cout × round16(Cin)] as the backward kernels write them (per output channel, strips of 16
  /// input channels each holding every position: one partial is read straight through). CKernels
  /// sums them as it goes; the threads share out the output channels. bias.grad += the per-thread
  /// sums [parts, Cout].
  func addWinogradGradients(uGrads: Tensor, biasPartials: Tensor, parts: Int, tile: Int) {
    let (cout, cin) = (outChannels, inChannels)
    let weightsBackward = tile == 4 ? ck_winograd4_weights_backward : ck_winograd_weights_backward
    let partStride = uGrads.count / max(parts, 1)
    let (sums, weightGrad) = (uGrads.pointer, weight.grad.pointer)
    Parallel.forRanges(cout, minimumPerPart: Conv2D.minimumKernelsPerThread / cin) { channels in
      weightsBackward(
        sums, Int32(parts), partStride, Int32(cout), Int32(cin), Int32(channels.lowerBound),
        Int32(channels.upperBound), weightGrad)
    }
    for co in 0..<cout {
      var sum: Float = 0
      for part in 0..<parts { sum += biasPartials.pointer[part * cout + co] }
      bias.grad.pointer[co] += sum
    }
  }
}
