import FoundationEssentials
import Glibc

/// The VGG-style image encoder (SPEC §3): for each entry of `config.layers` a 3×3 conv + ReLU or a
/// 2×2 max-pool, then a global average pool (`avg`) or a (C, H, W)-order flatten (`flatten`), then
/// `fc` (no activation) giving the image vector v [B, dv].
public final class Encoder {
  /// One stage of the stack, in order.
  public enum Stage {
    case conv(Conv2D)
    case maxPool(MaxPool2D)
  }

  public let config: ModelConfig
  public let stages: [Stage]
  /// The conv layers alone, in order (`conv{k}` in the tensor names).
  public let convolutions: [Conv2D]
  public let globalPool: GlobalAvgPool?  // pool `avg` only
  public let fc: Linear

  /// False while the convolutions are frozen (`--freeze-encoder`): `backward` then stops at `fc`.
  public var trainsConvolutions = true

  /// The last pass's block means [B, config.blockMeansWidth] (SPEC §3c): the output of each
  /// max-pool, and of the last stage when it is a conv, averaged per channel over its positions,
  /// concatenated in order. What the familiarity score reads; a workspace.
  public private(set) var blockMeans = Tensor(zeros: [0, 0])

  private var featureShape: [Int] = []  // [B, C, h, w] of the last stage's output
  /// Whether the last forward kept every stage's output, as `backward` through the convolutions
  /// needs (see `features(_:keepActivations:)`).
  private var activationsKept = true
  /// Inference passes: two buffers the stages write into in turn, and each stage's output as a view
  /// of one of them, for the batch size and fused pools of `stageViewsKey`.
  private var stageBuffers: [Tensor] = []
  private var stageViews: [Tensor] = []
  private var stageViewsKey: (batch: Int, fused: Set<Int>) = (-1, [])
  private var flattened: Tensor?  // the [B, C·h·w] view handed to fc (pool `flatten`)
  private var flattenedBase: Tensor?

  public init(config: ModelConfig) {
    self.config = config
    var stages: [Stage] = []
    var convolutions: [Conv2D] = []
    var channels = 3
    for layer in config.layers {
      switch layer {
      case .conv(let out):
        let conv = Conv2D(inChannels: channels, outChannels: out, relu: true)
        stages.append(.conv(conv))
        convolutions.append(conv)
        channels = out
      case .maxPool:
        stages.append(.maxPool(MaxPool2D()))
      }
    }
    self.stages = stages
    self.convolutions = convolutions
    let scratch = ConvScratch()  // the layers run one after another
    for conv in convolutions { conv.scratch = scratch }
    let shape = config.encoderOutputShape
    switch config.pool {
    case .avg:
      globalPool = GlobalAvgPool()
      fc = Linear(inFeatures: shape.channels, outFeatures: config.dv)
    case .flatten:
      globalPool = nil
      fc = Linear(inFeatures: shape.channels * shape.height * shape.width, outFeatures: config.dv)
    }
  }

  /// Marks the convolutions' weights as final (`Conv2D.weightsAreFixed`): for a model loaded to
  /// caption, never to train.
  /// Their kept Winograd transforms share one storage, sized for the largest tile: as one
  /// allocation of a megabyte or more it takes 2 MB pages (`Tensor.largeBytes`), where a storage
  /// each took a fault per 4 KB on the first pass (the bundled model's 1.7 MB: 400 faults).
  public func fixWeights() {
    let storage = TensorArena(count: convolutions.reduce(0) { $0 + $1.largestTransformCount })
    for conv in convolutions {
      conv.weightsAreFixed = true
      conv.transformStorage = storage
    }
  }

  /// Computes each Winograd layer's kept weight transform at the tile of the map it gets from an
  /// image of the configured size, on the calling thread alone: the work a first inference pass
  /// would begin with, done ahead (`CaptionerPrefetch`, beside the command line's parse). After
  /// `fixWeights`.
  public func computeFixedTransforms() {
    precondition(
      convolutions.allSatisfy(\.weightsAreFixed), "Encoder: computeFixedTransforms before fixWeights")
    var size = config.imageSize  // the map a stage reads, S × S
    for stage in stages {
      switch stage {
      case .conv(let conv) where conv.algorithm == .winograd:
        _ = conv.forwardTransform(tile: conv.winogradTile(height: size, width: size), onCallingThread: true)
      case .conv: break
      case .maxPool: size /= 2
      }
    }
  }

  /// Kaiming-normal conv weights, zero conv biases, PyTorch-default uniform fc.
  public func initialize(using generator: inout SeededGenerator) {
    for conv in convolutions { conv.initialize(using: &generator) }
    fc.initialize(using: &generator)
  }

  /// The parameters by SPEC §3 name relative to `encoder.`: `conv{k}.weight`, `conv{k}.bias`,
  /// `fc.weight`, `fc.bias`.
  public var namedParameters: [(String, Parameter)] {
    var result: [(String, Parameter)] = []
    for (k, conv) in convolutions.enumerated() {
      result.append(("conv\(k).weight", conv.weight))
      result.append(("conv\(k).bias", conv.bias))
    }
    result.append(("fc.weight", fc.weight))
    result.append(("fc.bias", fc.bias))
    return result
  }

  public var parameters: [Parameter] { namedParameters.map { $0.1 } }

  /// The max-pool stages that run inside the convolution before them (`Conv2D.fusesPool` at the
  /// map size the configuration gives it): that convolution writes the pooled map, and the stage
  /// itself does nothing, forward or backward.
  public var fusedPools: Set<Int> {
    var fused: Set<Int> = []
    var size = config.imageSize
    for (index, stage) in stages.enumerated() {
      switch stage {
      case .conv(let conv):
        guard index + 1 < stages.count, case .maxPool = stages[index + 1] else { continue }
        if conv.fusesPool(height: size, width: size) { fused.insert(index + 1) }
      case .maxPool: size /= 2
      }
    }
    return fused
  }

  /// images [B, 3, S, S] (normalised) → the last stage's feature map [B, C, h, w] (a workspace):
  /// the convolutional features, what torchvision's VGG `features` gives.
  ///
  /// `keepActivations` keeps every stage's output in its own workspace, as `backward` through the
  /// convolutions needs. Without it (inference, frozen convolutions) the stages write into two
  /// buffers in turn, so the pass holds two activations instead of all of them: for VGG-16 at
  /// 224 px, 2 × 12.8 MB per image instead of 60 MB.
  public func features(_ images: Tensor, keepActivations: Bool = true) -> Tensor {
    precondition(
      images.shape == [images.shape.first ?? 0, 3, config.imageSize, config.imageSize],
      "Encoder: images \(images.shape), expected [B, 3, \(config.imageSize), \(config.imageSize)]")
    activationsKept = keepActivations
    let batch = images.shape[0]
    if blockMeans.shape != [batch, config.blockMeansWidth] {
      blockMeans = Tensor(zeros: [batch, config.blockMeansWidth])
    }
    var x = images
    var column = 0  // where the next block's means go in blockMeans' rows
    let fused = fusedPools
    let outputs = keepActivations ? [] : stageOutputs(batch: batch, fused: fused)
    for (index, stage) in stages.enumerated() {
      // each stage's own workspace when keeping activations, else one of the two shared buffers
      var isPool = false
      switch stage {
      case .conv(let conv):  // → [B, Cout, h, w], or with the next stage's pool [B, Cout, h/2, w/2]
        let pool = fused.contains(index + 1)
        if keepActivations {
          x = conv.forward(x, pool: pool)
        } else {
          conv.forward(x, into: outputs[index], pool: pool)
        }
      case .maxPool(let pool):  // → [B, C, h/2, w/2]
        isPool = true
        if fused.contains(index) { break }  // done by the conv before
        if keepActivations { x = pool.forward(x) } else { pool.forward(x, into: outputs[index]) }
      }
      if !keepActivations { x = outputs[index] }
      if isPool || index == stages.count - 1 { addBlockMeans(of: x, at: &column) }
    }
    return x
  }

  /// Writes the channel means of `x` [B, C, h, w] into columns column..<column+C of `blockMeans`.
  private func addBlockMeans(of x: Tensor, at column: inout Int) {
    let (batch, channels, positions) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
    let width = blockMeans.shape[1]
    for b in 0..<batch {
      for c in 0..<channels {
        // In vectors (Elementwise.mean): a plain loop over Floats is one chain of scalar additions,
        // which VGG-16's maps at 224 px (1.5 M values an image) make 1–2% of a forward.
        let plane = x.pointer + (b * channels + c) * positions
        blockMeans.pointer[b * width + column + c] = Elementwise.mean(plane, count: positions)
      }
    }
    column += channels
  }

  /// Each stage's output for a batch of `batch` images, as views of two buffers taken in turn (each
  /// stage that computes writes one buffer while it reads the other; a max-pool in `fused`, done
  /// by the conv before it, has that conv's pooled output), built once per batch size.
  private func stageOutputs(batch: Int, fused: Set<Int>) -> [Tensor] {
    if stageViewsKey.batch == batch && stageViewsKey.fused == fused { return stageViews }
    var shapes: [[Int]] = []
    var buffers: [Int] = []  // which buffer each stage's output is in
    var (channels, height, width) = (3, config.imageSize, config.imageSize)
    var kernelScratch = 0  // the most any conv's forward takes
    for (index, stage) in stages.enumerated() {
      switch stage {
      case .conv(let conv):
        kernelScratch = max(
          kernelScratch, conv.forwardScratchCount(batch: batch, height: height, width: width))
        channels = conv.outChannels
        if fused.contains(index + 1) { (height, width) = (height / 2, width / 2) }
      case .maxPool:
        if !fused.contains(index) { (height, width) = (height / 2, width / 2) }
      }
      shapes.append([batch, channels, height, width])
      buffers.append(fused.contains(index) ? buffers[index - 1] : 1 - (buffers.last ?? 1))
    }
    let largest = shapes.map { $0.reduce(1, *) }.max() ?? 0
    stageViews = []  // release the old views before their buffers
    stageBuffers = [Tensor(zeros: [largest]), Tensor(zeros: [largest])]
    stageViews = shapes.indices.map { k in stageBuffers[buffers[k]].view(shape: shapes[k]) }
    stageViewsKey = (batch, fused)
    convolutions.first?.scratch.reserve(.kernel, count: kernelScratch)  // the one they share
    return stageViews
  }

  /// F, the width of what `fc` reads: C (pool `avg`) or C·h·w (`flatten`).
  public var fcInputWidth: Int { fc.inFeatures }

  /// images [B, 3, S, S] (normalised) → what `fc` reads, [B, F] (a workspace): the feature map
  /// averaged (`avg`) or flattened (`flatten`). What the feature cache holds per image.
  public func fcInput(_ images: Tensor, keepActivations: Bool = true) -> Tensor {
    let x = features(images, keepActivations: keepActivations)
    featureShape = x.shape
    if let globalPool = globalPool {
      return globalPool.forward(x)  // [B, C]
    }
    // flatten(1) on NCHW is the same memory seen as [B, C·h·w]; keep the view while x is unchanged.
    if flattenedBase !== x {
      flattenedBase = x
      flattened = x.reshaped([x.shape[0], x.shape[1] * x.shape[2] * x.shape[3]])
    }
    return flattened!
  }

  /// images [B, 3, S, S] (normalised) → v [B, dv] (a workspace of `fc`); `keepActivations` as in
  /// `features`.
  public func forward(_ images: Tensor, keepActivations: Bool = true) -> Tensor {
    fc.forward(fcInput(images, keepActivations: keepActivations))  // [B, dv]
  }

  /// `fc`'s input [B, F] (from the feature cache) → v [B, dv]. Only while the convolutions are
  /// frozen: `backward` then goes no further than `fc`.
  public func forward(fcInput: Tensor) -> Tensor {
    precondition(!trainsConvolutions, "Encoder: features in place of images need frozen convolutions")
    return fc.forward(fcInput)
  }

  /// Accumulates every parameter's gradient from dL/dv [B, dv]; no image gradient.
  public func backward(_ vGrad: Tensor) {
    backward(vGrad, needInputGrad: false)
  }

  /// As `backward(_:)`, and returns dL/dimages [B, 3, S, S] when `needInputGrad` (for tests).
  /// `gradientsFinal` is told each layer's parameters once their gradients are complete.
  @discardableResult
  public func backward(
    _ vGrad: Tensor, needInputGrad: Bool, gradientsFinal: (([Parameter]) -> Void)? = nil
  ) -> Tensor? {
    if !trainsConvolutions && !needInputGrad {
      fc.backward(vGrad, needInputGrad: false)  // dL/dfc only: the frozen convolutions need nothing
      gradientsFinal?(fc.parameters)
      return nil
    }
    precondition(activationsKept, "Encoder.backward: the forward pass did not keep its activations")
    var grad = fc.backward(vGrad, needInputGrad: true)!  // [B, F]
    gradientsFinal?(fc.parameters)
    if let globalPool = globalPool {
      grad = globalPool.backward(grad)  // [B, C, h, w]
    } else {
      grad = grad.reshaped(featureShape)
    }
    for (index, stage) in stages.enumerated().reversed() {
      switch stage {
      case .conv(let conv):
        let isFirst = index == 0
        let convInputGrad = conv.backward(grad, needInputGrad: !isFirst || needInputGrad)
        gradientsFinal?(conv.parameters)
        guard let inputGrad = convInputGrad else { return nil }
        grad = inputGrad
      case .maxPool(let pool):
        // Skipped where the conv before ran it (its forward `pooled`): grad is already its input's.
        if index > 0, case .conv(let conv) = stages[index - 1], conv.pooled { continue }
        grad = pool.backward(grad)
      }
    }
    return needInputGrad ? grad : nil
  }
}
