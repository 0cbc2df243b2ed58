/// Inverted dropout: in training each element is zeroed with probability p and the survivors are
/// scaled by 1/(1 − p), so evaluation is the identity.
public final class Dropout {
  public let probability: Float
  private var mask: Tensor?  // 0 or 1/(1 − p), same shape as the input
  private var output: Tensor?
  private var inputGrad: Tensor?
  private var wasTraining = false

  public init(probability: Float) {
    precondition(probability >= 0 && probability < 1, "Dropout: probability \(probability) outside [0, 1)")
    self.probability = probability
  }

  public var parameters: [Parameter] { [] }

  /// Returns `input` itself when not training or p = 0 (no copy); otherwise the layer's output.
  public func forward<G: RandomNumberGenerator>(
    _ input: Tensor, training: Bool, generator: inout G
  ) -> Tensor {
    wasTraining = training && probability > 0
    guard wasTraining else { return input }
    let mask = reuseWorkspace(&self.mask, shape: input.shape)
    let output = reuseWorkspace(&self.output, shape: input.shape)
    let keep = 1 / (1 - probability)
    for i in 0..<input.count {
      let m: Float = generator.nextUnitFloat() < probability ? 0 : keep
      mask.pointer[i] = m
      output.pointer[i] = input.pointer[i] * m
    }
    return output
  }

  /// dL/dinput = dL/doutput ⊙ mask (or `outputGrad` itself when the forward was the identity).
  public func backward(_ outputGrad: Tensor) -> Tensor {
    guard wasTraining, let mask = mask else { return outputGrad }
    precondition(outputGrad.count == mask.count, "Dropout.backward: \(outputGrad.shape) vs \(mask.shape)")
    let inputGrad = reuseWorkspace(&self.inputGrad, shape: mask.shape)
    for i in 0..<mask.count { inputGrad.pointer[i] = outputGrad.pointer[i] * mask.pointer[i] }
    return inputGrad
  }
}
