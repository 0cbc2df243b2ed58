import CKernels
import FoundationEssentials
import Glibc

/// Adam (Kingma & Ba 2015) with PyTorch's bias correction, and optional decoupled weight decay
/// (AdamW, Loshchilov & Hutter 2019). For step t (counting from 1), per element:
///   p ← p − lr·λ·p                       (decoupled decay, when λ > 0)
///   m ← β₁m + (1 − β₁)g,  v ← β₂v + (1 − β₂)g²
///   p ← p − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
public final class Adam {
  public let parameters: [Parameter]
  public var learningRate: Float
  public var beta1: Float
  public var beta2: Float
  public var epsilon: Float
  public var weightDecay: Float
  /// Steps taken so far (restore it with the moments to resume).
  public var stepCount = 0
  /// First and second moments, one pair per parameter, same shapes (save/restore them to resume).
  public let moments: [(m: Tensor, v: Tensor)]

  public init(
    parameters: [Parameter], learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
    epsilon: Float = 1e-8, weightDecay: Float = 0
  ) {
    self.parameters = parameters
    self.learningRate = learningRate
    self.beta1 = beta1
    self.beta2 = beta2
    self.epsilon = epsilon
    self.weightDecay = weightDecay
    moments = parameters.map { (Tensor(zeros: $0.shape), Tensor(zeros: $0.shape)) }
  }

  /// One update with the stored learning rate.
  public func step() { step(learningRate: learningRate) }

  /// One update of every parameter from its `grad` times `gradientScale` (the grads are left
  /// unchanged; a scale below 1 is how `clipGradientNorm`'s factor can be applied without a pass
  /// of its own). Vectorised C (`ck_adam_update`) over contiguous ranges split between the threads;
  /// bit for bit the scalar formula above, on every instruction set and for any thread count.
  public func step(learningRate: Float, gradientScale: Float = 1) {
    stepCount += 1
    let t = Double(stepCount)
    let correction1 = Float(1 - pow(Double(beta1), t))
    let correction2 = Float(1 - pow(Double(beta2), t))
    // p −= (lr/c₁) · m / (√v/√c₂ + ε)
    var constants = ck_adam_constants(
      beta1: beta1, beta2: beta2, one_minus_beta1: 1 - beta1, one_minus_beta2: 1 - beta2,
      step_size: learningRate / correction1, inverse_root_correction2: 1 / correction2.squareRoot(),
      epsilon: epsilon, decay: 1 - learningRate * weightDecay, gradient_scale: gradientScale)
    let tensors = UncheckedSendable(zip(parameters, moments).map { ($0.value, $0.grad, $1.m, $1.v) })
    let total = parameters.reduce(0) { $0 + $1.value.count }
    // The parameters as one vector, cut into one contiguous range per thread (memory-bound: a
    // second thread pays from ~64 k elements on).
    let parts = min(Parallel.workers, max(1, total / 65536))
    withUnsafePointer(to: &constants) { constants in
      let constants = UncheckedSendable(constants)
      Parallel.ranges(total, parts: parts) { _, range in
        var offset = 0  // of the current parameter in the whole
        for (p, g, m, v) in tensors.value {
          let start = max(range.lowerBound - offset, 0)
          let end = min(range.upperBound - offset, p.count)
          if start < end {
            ck_adam_update(
              p.pointer + start, g.pointer + start, m.pointer + start, v.pointer + start, end - start,
              constants.value)
          }
          offset += p.count
        }
      }
    }
  }
}

/// Scales every gradient so that their global L2 norm is at most `maxNorm` (PyTorch's
/// `clip_grad_norm_`: factor maxNorm / (norm + 1e-6) when norm > maxNorm). Returns the norm before
/// clipping. A non-finite norm is returned as is and nothing is scaled (the caller decides).
/// (Training passes `clippingFactor` to `Adam.step` instead, which saves this pass over the gradients.)
@discardableResult
public func clipGradientNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
  let norm = gradientNorm(parameters)
  let factor = clippingFactor(norm: norm, maxNorm: maxNorm)
  if factor != 1 {
    for parameter in parameters { parameter.grad.scale(by: factor) }
  }
  return Float(norm)
}

/// The factor `clipGradientNorm` scales the gradients by: maxNorm / (norm + 1e-6) when the norm
/// exceeds maxNorm, else 1 (also for a non-finite norm).
public func clippingFactor(norm: Double, maxNorm: Float) -> Float {
  norm.isFinite && norm > Double(maxNorm) ? Float(Double(maxNorm) / (norm + 1e-6)) : 1
}

/// The global L2 norm of the gradients, √(Σ g²) in Double. The sum runs over fixed chunks of 2¹⁶
/// elements (each Elementwise.sumOfSquares), shared out over the threads and added in order, so
/// the result does not depend on the thread count.
public func gradientNorm(_ parameters: [Parameter]) -> Double {
  let chunk = 1 << 16
  var pieces: [(pointer: UnsafePointer<Float>, count: Int)] = []
  for parameter in parameters {
    for start in stride(from: 0, to: parameter.grad.count, by: chunk) {
      pieces.append((UnsafePointer(parameter.grad.pointer + start), min(chunk, parameter.grad.count - start)))
    }
  }
  var sums = [Double](repeating: 0, count: pieces.count)
  sums.withUnsafeMutableBufferPointer { sums in
    let (sums, pieces) = (UncheckedSendable(sums.baseAddress!), UncheckedSendable(pieces))
    Parallel.ranges(pieces.value.count, parts: Parallel.workers) { _, range in
      for k in range {
        sums.value[k] = Elementwise.sumOfSquares(pieces.value[k].pointer, count: pieces.value[k].count)
      }
    }
  }
  return sums.reduce(0, +).squareRoot()
}

/// Sets every gradient to zero (before accumulating a new batch).
public func zeroGradients(_ parameters: [Parameter]) {
  for parameter in parameters { parameter.grad.fill(0) }
}
