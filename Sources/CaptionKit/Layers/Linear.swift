/// Fully connected layer: y = x · Wᵀ + b. weight [out, in], bias [out] (PyTorch's `nn.Linear`).
/// Input [N, in] (any tensor whose last dimension is `in`; leading dimensions are flattened into N).
public final class Linear {
  public let inFeatures: Int
  public let outFeatures: Int
  public let weight: Parameter  // [out, in]
  public let bias: Parameter  // [out]
  public var parameters: [Parameter] { [weight, bias] }

  private var input: Tensor?  // [N, in]
  private var output: Tensor?  // [N, out]
  private var inputGrad: Tensor?  // [N, in]
  private let packed = PackedMatrix()  // the right operand of the product being computed

  public init(inFeatures: Int, outFeatures: Int) {
    precondition(inFeatures > 0 && outFeatures > 0, "Linear: sizes must be positive")
    self.inFeatures = inFeatures
    self.outFeatures = outFeatures
    weight = Parameter(name: "weight", shape: [outFeatures, inFeatures])
    bias = Parameter(name: "bias", shape: [outFeatures])
  }

  /// PyTorch's default: weight and bias uniform in ±1/√in.
  public func initialize(using generator: inout SeededGenerator) {
    let bound = 1 / Float(inFeatures).squareRoot()
    Initialization.uniform(weight.value, bound: bound, using: &generator)
    Initialization.uniform(bias.value, bound: bound, using: &generator)
  }

  public func forward(_ input: Tensor) -> Tensor {
    precondition(
      input.shape.last == inFeatures && input.count % inFeatures == 0,
      "Linear: input \(input.shape), expected [N, \(inFeatures)]")
    let rows = input.count / inFeatures
    self.input = input
    let output = reuseWorkspace(&self.output, shape: [rows, outFeatures])
    if rows <= SmallGemm.maxRows {
      // y = b + x Wᵀ with each row of W read once for all rows (decoder steps, one image's v)
      SmallGemm.multiply(
        m: rows, n: outFeatures, k: inFeatures, a: input.pointer, lda: inFeatures,
        weight: weight.value.pointer,
        ldw: inFeatures, bias: bias.value.pointer, c: output.pointer, ldc: outFeatures)
      return output
    }
    // Every row starts as the bias, then y += x [N, in] · Wᵀ [in, out].
    for r in 0..<rows {
      (output.pointer + r * outFeatures).update(from: bias.value.pointer, count: outFeatures)
    }
    Gemm.multiply(
      transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures,
      a: input.pointer, lda: inFeatures, b: weight.value.pointer, ldb: inFeatures,
      accumulate: true, c: output.pointer, ldc: outFeatures, workspace: packed)
    return output
  }

  /// Accumulates dW += dyᵀ · x and db += Σ_rows dy; returns dx = dy · W [N, in] when `needInputGrad`.
  @discardableResult
  public func backward(_ outputGrad: Tensor, needInputGrad: Bool = true) -> Tensor? {
    guard let input = input else { preconditionFailure("Linear.backward before forward") }
    let rows = input.count / inFeatures
    precondition(outputGrad.count == rows * outFeatures, "Linear.backward: \(outputGrad.shape)")
    Gemm.multiply(
      transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows,
      a: outputGrad.pointer, lda: outFeatures, b: input.pointer, ldb: inFeatures,
      accumulate: true, c: weight.grad.pointer, ldc: inFeatures, workspace: packed)
    for r in 0..<rows {
      Elementwise.add(outputGrad.pointer + r * outFeatures, into: bias.grad.pointer, count: outFeatures)
    }
    guard needInputGrad else { return nil }
    let inputGrad = reuseWorkspace(&self.inputGrad, shape: [rows, inFeatures])
    Gemm.multiply(
      transA: false, transB: false, m: rows, n: inFeatures, k: outFeatures,
      a: outputGrad.pointer, lda: outFeatures, b: weight.value.pointer, ldb: inFeatures,
      accumulate: false, c: inputGrad.pointer, ldc: inFeatures, workspace: packed)
    return inputGrad
  }
}

/// Token embedding: row `token` of weight [V, E] (PyTorch's `nn.Embedding`).
public final class Embedding {
  public let vocabularySize: Int
  public let embeddingSize: Int
  public let weight: Parameter  // [V, E]
  public var parameters: [Parameter] { [weight] }

  private var tokens: [Int] = []
  private var output: Tensor?  // [N, E]

  public init(vocabularySize: Int, embeddingSize: Int) {
    precondition(vocabularySize > 0 && embeddingSize > 0, "Embedding: sizes must be positive")
    self.vocabularySize = vocabularySize
    self.embeddingSize = embeddingSize
    weight = Parameter(name: "weight", shape: [vocabularySize, embeddingSize])
  }

  /// PyTorch's default for `nn.Embedding`: N(0, 1).
  public func initialize(using generator: inout SeededGenerator) {
    Initialization.normal(weight.value, standardDeviation: 1, using: &generator)
  }

  /// [N, E]: row i is weight[tokens[i]]. Token ids must lie in 0..<V (the vocabulary guarantees it).
  public func forward(tokens: [Int]) -> Tensor {
    let output = reuseWorkspace(&self.output, shape: [tokens.count, embeddingSize])
    self.tokens.removeAll(keepingCapacity: true)
    self.tokens.append(contentsOf: tokens)
    for (row, token) in tokens.enumerated() {
      precondition(
        token >= 0 && token < vocabularySize, "Embedding: token \(token) outside 0..<\(vocabularySize)")
      (output.pointer + row * embeddingSize).update(
        from: weight.value.pointer + token * embeddingSize, count: embeddingSize)
    }
    return output
  }

  /// Accumulates dweight[tokens[i]] += dL/doutput[i] (repeated tokens add up). No input gradient.
  public func backward(_ outputGrad: Tensor) {
    precondition(outputGrad.count == tokens.count * embeddingSize, "Embedding.backward: \(outputGrad.shape)")
    for (row, token) in tokens.enumerated() {
      Elementwise.add(
        outputGrad.pointer + row * embeddingSize, into: weight.grad.pointer + token * embeddingSize,
        count: embeddingSize)
    }
  }
}
