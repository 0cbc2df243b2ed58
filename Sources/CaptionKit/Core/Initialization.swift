/// Weight initialisation, all drawn from the project's seeded generator.
///
/// Conventions: conv weights Kaiming-normal (fan_in, gain √2), conv biases 0; Linear weight and bias
/// uniform ±1/√in (PyTorch's default); Embedding N(0, 1) (PyTorch's default).
public enum Initialization {
  /// Kaiming (He) normal for layers followed by ReLU: N(0, 2/fan_in).
  public static func kaimingNormal(_ tensor: Tensor, fanIn: Int, using generator: inout SeededGenerator) {
    normal(tensor, standardDeviation: (2 / Float(max(fanIn, 1))).squareRoot(), using: &generator)
  }

  /// N(0, σ²) in every element.
  public static func normal(
    _ tensor: Tensor, standardDeviation: Float, using generator: inout SeededGenerator
  ) {
    for i in 0..<tensor.count { tensor.pointer[i] = standardDeviation * generator.nextNormal() }
  }

  /// Uniform in [−bound, bound) in every element.
  public static func uniform(_ tensor: Tensor, bound: Float, using generator: inout SeededGenerator) {
    for i in 0..<tensor.count { tensor.pointer[i] = bound * (2 * generator.nextUnitFloat() - 1) }
  }
}
