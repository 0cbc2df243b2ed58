import Foundation

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

  /// One update of every parameter from its `grad` (which is left unchanged).
  public func step(learningRate: Float) {
    stepCount += 1
    let t = Double(stepCount)
    let correction1 = Float(1 - pow(Double(beta1), t))
    let correction2 = Float(1 - pow(Double(beta2), t))
    // p −= (lr/c₁) · m / (√v/√c₂ + ε)
    let stepSize = learningRate / correction1
    let inverseRootCorrection2 = 1 / correction2.squareRoot()
    let decay = 1 - learningRate * weightDecay
    let (b1, b2, eps) = (beta1, beta2, epsilon)
    for (parameter, moment) in zip(parameters, moments) {
      let p = parameter.value.pointer
      let g = parameter.grad.pointer
      let m = moment.m.pointer
      let v = moment.v.pointer
      for i in 0..<parameter.value.count {
        if weightDecay != 0 { p[i] *= decay }
        m[i] = b1 * m[i] + (1 - b1) * g[i]
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
        p[i] -= stepSize * m[i] / (v[i].squareRoot() * inverseRootCorrection2 + eps)
      }
    }
  }
}

/// SGD with momentum, as PyTorch's `torch.optim.SGD` (dampening 0, not Nesterov):
///   g ← g + λp (coupled weight decay, when λ > 0);  b ← μb + g (b = g at the first step);  p ← p − lr·b
public final class SGD {
  public let parameters: [Parameter]
  public var learningRate: Float
  public var momentum: Float
  public var weightDecay: Float
  public var stepCount = 0
  /// The momentum buffers, one per parameter (save/restore them to resume).
  public let velocities: [Tensor]

  public init(parameters: [Parameter], learningRate: Float, momentum: Float = 0.9, weightDecay: Float = 0) {
    self.parameters = parameters
    self.learningRate = learningRate
    self.momentum = momentum
    self.weightDecay = weightDecay
    velocities = parameters.map { Tensor(zeros: $0.shape) }
  }

  public func step() { step(learningRate: learningRate) }

  public func step(learningRate: Float) {
    let first = stepCount == 0
    stepCount += 1
    let (mu, lambda) = (momentum, weightDecay)
    for (parameter, velocity) in zip(parameters, velocities) {
      let p = parameter.value.pointer
      let g = parameter.grad.pointer
      let b = velocity.pointer
      for i in 0..<parameter.value.count {
        let gradient = g[i] + lambda * p[i]
        b[i] = first ? gradient : mu * b[i] + gradient
        p[i] -= learningRate * b[i]
      }
    }
  }
}

/// Scales every gradient so that their global L2 norm is at most `maxNorm` (PyTorch's
/// `clip_grad_norm_`: factor maxNorm / (norm + 1e-6) when norm > maxNorm). Returns the norm before
/// clipping. A non-finite norm is returned as is and nothing is scaled (the caller decides).
@discardableResult
public func clipGradientNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
  var squares = 0.0
  for parameter in parameters {
    squares += Elementwise.sumOfSquares(parameter.grad.pointer, count: parameter.grad.count)
  }
  let norm = squares.squareRoot()
  if norm.isFinite && norm > Double(maxNorm) {
    let factor = Float(Double(maxNorm) / (norm + 1e-6))
    for parameter in parameters { parameter.grad.scale(by: factor) }
  }
  return Float(norm)
}

/// Sets every gradient to zero (before accumulating a new batch).
public func zeroGradients(_ parameters: [Parameter]) {
  for parameter in parameters { parameter.grad.fill(0) }
}
