/// The training objective: the caption model's cross-entropy plus weighted auxiliary terms,
///
///     objective = loss_caption + Σ_terms weight_term · loss_term
///
/// The model computes the network and the caption loss; each term (WordLoss, and the shapes data's
/// SceneLoss and MentionLoss) reads the image vectors or the top hidden states the model's forward
/// left, and adds its weighted gradient back through the model's backward hooks.
final class TrainingObjective {
  let model: CaptionModel
  let terms: [any ObjectiveTerm]
  /// The last `forward`'s caption cross-entropy and each term's loss (nil: the term did not apply).
  private(set) var captionLoss: Float = 0
  private(set) var termLosses: [Float?]

  /// Only the terms train (`--retrieval-only`): backward skips the captioner and the encoder.
  let captionerFrozen: Bool
  private var frozenImageGrad = Tensor(zeros: [0])  // [B, Dv]: the terms' dv, unused

  init(model: CaptionModel, terms: [any ObjectiveTerm], captionerFrozen: Bool = false) {
    self.model = model
    self.terms = terms
    self.captionerFrozen = captionerFrozen
    termLosses = [Float?](repeating: nil, count: terms.count)
    termParameters = terms.flatMap(\.parameters)
    namedTrainableParameters = model.namedParameters + termParameters
    trainableParameters = namedTrainableParameters.map { $0.1 }
  }

  /// The terms' heads under their training-state names.
  let termParameters: [(String, Parameter)]
  /// What training updates: the model's parameters, then the terms' heads (listed once: every step
  /// zeroes and clips them).
  let namedTrainableParameters: [(String, Parameter)]
  let trainableParameters: [Parameter]

  /// The weighted total of the last `forward`.
  var total: Float {
    zip(terms, termLosses).reduce(captionLoss) { sum, pair in sum + pair.0.weight * (pair.1 ?? 0) }
  }

  /// The retrieval term's negatives in `epoch` (0-based): summed before `hardAfter`, then the hardest.
  func startEpoch(_ epoch: Int, retrievalHardAfter hardAfter: Int) {
    for case let term as RetrievalTerm in terms { term.negatives = epoch < hardAfter ? .sum : .hardest }
  }

  /// In a data-parallel run: the retrieval terms' losses of the whole batch (`RetrievalTerm.exchange`),
  /// on every rank, also those whose share of the batch is empty.
  func exchangeRetrievalLosses(hasRows: Bool) throws {
    for (i, term) in terms.enumerated() {
      if let retrieval = term as? RetrievalTerm { termLosses[i] = try retrieval.exchange(hasRows: hasRows) }
    }
  }

  /// Runs the model and every term on `batch`; returns the caption cross-entropy.
  func forward(_ batch: TrainingBatch, training: Bool, generator: inout SeededGenerator) -> Float {
    captionLoss = model.forward(
      images: batch.images, features: batch.features, captionsPerImage: batch.captionsPerImage,
      steps: batch.steps,
      inputTokens: batch.inputTokens, targetTokens: batch.targetTokens, training: training,
      generator: &generator)
    if !terms.isEmpty {
      let input = ObjectiveInput(
        imageVectors: model.lastImageVectors, topStates: model.lastTopStates,
        targetTokens: batch.targetTokens, steps: batch.steps, captionsPerImage: batch.captionsPerImage,
        imageIds: batch.imageIds)
      for (i, term) in terms.enumerated() { termLosses[i] = term.forward(input) }
    }
    return captionLoss
  }

  /// Accumulates the gradient of the last `forward`'s objective into every trainable parameter; with
  /// `imageGrad`, also returns its gradient with respect to the input images.
  /// `gradientsFinal` is told each layer's and term's parameters once their gradients are complete.
  @discardableResult
  func backward(imageGrad: Bool = false, gradientsFinal: (([Parameter]) -> Void)? = nil) -> Tensor? {
    if captionerFrozen {
      let shape = model.lastImageVectors.shape
      if frozenImageGrad.shape != shape { frozenImageGrad = Tensor(zeros: shape) }
      frozenImageGrad.fill(0)
      addTermGradients(from: .imageVectors, into: frozenImageGrad, gradientsFinal)
      return nil
    }
    return model.backward(
      imageGrad: imageGrad,
      addToTopStatesGrad: { dh in self.addTermGradients(from: .topStates, into: dh, gradientsFinal) },
      addToImageVectorsGrad: { dv in self.addTermGradients(from: .imageVectors, into: dv, gradientsFinal) },
      gradientsFinal: gradientsFinal)
  }

  private func addTermGradients(
    from source: ObjectiveTermSource, into gradient: Tensor, _ gradientsFinal: (([Parameter]) -> Void)?
  ) {
    for (term, loss) in zip(terms, termLosses) where term.source == source && loss != nil {
      term.backward(into: gradient)
      gradientsFinal?(term.parameters.map { $0.1 })
    }
  }
}
