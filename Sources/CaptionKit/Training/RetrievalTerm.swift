/// The image–sentence ranking loss as a term of the training objective (SPEC §8):
///
///     objective = caption cross-entropy + … + weight · RankingLoss(imageProjection(v), sentences)
///
/// The sentences are the batch's own captions (the decoder's targets, words only); the term's
/// gradient enters the encoder through the image vectors v, so the captioner and the joint space
/// share the encoder. Its parameters are the model's `retrieval.*` tensors (saved in the model
/// file), not a training-only head.
public final class RetrievalTerm: ObjectiveTerm {
  public let model: RetrievalModel
  public let name = "retrieval"
  public let weight: Float
  public let source = ObjectiveTermSource.imageVectors
  public var parameters: [(String, Parameter)] { [] }
  public let loss: RankingLoss
  /// Which negatives the loss sums (`sum` while warming up, then `hardest`).
  public var negatives = RankingLoss.Negatives.sum
  /// A data-parallel run's ranks (nil: one process). Every rank then scores the whole batch: its
  /// vectors are joined with every other rank's (`exchange`), so the negatives are those of one
  /// process, and each rank back-propagates its own rows.
  var group: (any TrainingGroup)?
  private var ownVectors = (images: Tensor(zeros: [0]), sentences: Tensor(zeros: [0]))
  /// This rank's rows of the whole batch's images, and the batch's captions per image (in a group).
  private var ownImages = 0..<0
  private var captionsPerImage = 1

  public init(model: RetrievalModel, weight: Float, margin: Float) {
    self.model = model
    self.weight = weight
    loss = RankingLoss(margin: margin)
  }

  /// One process: the loss of the batch. In a group: this rank's vectors only (the loss is
  /// `exchange`'s, which every rank calls next).
  public func forward(_ input: ObjectiveInput) -> Float? {
    let rows = input.imageVectors.shape[0] * input.captionsPerImage
    // no negatives in a batch of one (in a group, the whole batch decides)
    guard input.imageVectors.shape[0] >= 2 || group != nil else { return nil }
    let lengths = RetrievalModel.lengths(targets: input.targetTokens, steps: input.steps, rows: rows)
    // The decoder's last step is every row's <end> or padding: the sentences stop a step earlier.
    let steps = max(lengths.max() ?? 0, 1)
    let s = model.sentences.forward(tokens: input.targetTokens, steps: steps, lengths: lengths)
    let u = model.images.forward(input.imageVectors)
    if group != nil {
      ownVectors = (u, s)
      return 0
    }
    return loss.forward(images: u, sentences: s, negatives: negatives)
  }

  /// In a group, on every rank after `forward` (or without it, when this rank's share of the batch
  /// is empty: `hasRows` false): the whole batch's vectors, every rank's in rank order (the order of
  /// one process's batch: rank r holds a contiguous share), and their loss, the same on every rank.
  /// Nil when the whole batch has fewer than two images.
  func exchange(hasRows: Bool) throws -> Float? {
    guard let group else { preconditionFailure("RetrievalTerm.exchange outside a group") }
    let dim = model.config.dim
    let images = try group.gatherRows(hasRows ? ownVectors.images.array : [], width: dim, everywhere: true)
    let sentences = try group.gatherRows(
      hasRows ? ownVectors.sentences.array : [], width: dim, everywhere: true)
    let imageCount = images.counts.reduce(0, +)
    guard imageCount >= 2 else { return nil }
    let firstImage = images.counts[..<group.rank].reduce(0, +)
    ownImages = firstImage..<firstImage + images.counts[group.rank]
    captionsPerImage = sentences.rows.count / (imageCount * dim)
    return loss.forward(
      images: Tensor(shape: [imageCount, dim], values: images.rows),
      sentences: Tensor(shape: [imageCount * captionsPerImage, dim], values: sentences.rows),
      negatives: negatives)
  }

  public func backward(into gradient: Tensor) {
    var (du, ds) = loss.backward()
    if group != nil {  // this rank's rows of the whole batch's gradients (views, no copies)
      let (dim, K) = (model.config.dim, captionsPerImage)
      du = du.view(offset: ownImages.lowerBound * dim, shape: [ownImages.count, dim])
      ds = ds.view(offset: ownImages.lowerBound * K * dim, shape: [ownImages.count * K, dim])
    }
    du.scale(by: weight)
    ds.scale(by: weight)
    model.sentences.backward(ds)
    Elementwise.add(model.images.backward(du).pointer, into: gradient.pointer, count: gradient.count)
  }
}
