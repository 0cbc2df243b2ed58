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

  public init(model: RetrievalModel, weight: Float, margin: Float) {
    self.model = model
    self.weight = weight
    loss = RankingLoss(margin: margin)
  }

  public func forward(_ input: ObjectiveInput) -> Float? {
    let rows = input.imageVectors.shape[0] * input.captionsPerImage
    guard input.imageVectors.shape[0] >= 2 else { return nil }  // no negatives in a batch of one
    let lengths = RetrievalModel.lengths(targets: input.targetTokens, steps: input.steps, rows: rows)
    // The decoder's last step is every row's <end> or padding: the sentences stop a step earlier.
    let steps = max(lengths.max() ?? 0, 1)
    let s = model.sentences.forward(tokens: input.targetTokens, steps: steps, lengths: lengths)
    let u = model.images.forward(input.imageVectors)
    return loss.forward(images: u, sentences: s, negatives: negatives)
  }

  public func backward(into gradient: Tensor) {
    let (du, ds) = loss.backward()
    du.scale(by: weight)
    ds.scale(by: weight)
    model.sentences.backward(ds)
    Elementwise.add(model.images.backward(du).pointer, into: gradient.pointer, count: gradient.count)
  }
}
