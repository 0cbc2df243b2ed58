/// Turns image vectors into captions through any `StepModel` (SPEC §3, decoding paragraph).
///
/// Every decoder runs all images of the batch together: one `model.step` per decoder step for all
/// live rows, then O(rows·V) work on the logits. Rows whose caption is finished leave the batch
/// through `model.gather`.
public enum CaptionDecoder {
  /// Greedy, beam search or sampling, as `options` say (`sample`, else `beamSize` 1 is greedy).
  /// Every decoder traps on options that `DecodingOptions.validate` refuses.
  public static func decode<M: StepModel>(
    model: M, imageVectors: Tensor, options: DecodingOptions
  ) -> [DecodedCaption] {
    if options.sample { return sample(model: model, imageVectors: imageVectors, options: options) }
    if options.beamSize <= 1 {
      return greedy(model: model, imageVectors: imageVectors, options: options)
    }
    return beamSearch(model: model, imageVectors: imageVectors, options: options)
  }

  /// At each step the most probable allowed token (the lowest id on ties), until `<end>` or
  /// `maxLength` steps.
  public static func greedy<M: StepModel>(
    model: M, imageVectors: Tensor, options: DecodingOptions
  ) -> [DecodedCaption] {
    options.require()
    return chooseEachStep(model: model, imageVectors: imageVectors, options: options) { row, count, _ in
      TokenChoice.argmax(row, count: count)
    }
  }

  /// Empty captions for every image (nothing to decode).
  static func emptyCaptions(_ count: Int) -> [DecodedCaption] {
    [DecodedCaption](
      repeating: DecodedCaption(tokens: [], logprob: 0, endedWithEnd: false), count: count)
  }

  /// The loop shared by greedy decoding and sampling: one hypothesis per image, `choose` picks the
  /// next token of an image from its row of logits (banned entries already −∞).
  static func chooseEachStep<M: StepModel>(
    model: M, imageVectors: Tensor, options: DecodingOptions,
    choose: (_ row: UnsafeMutablePointer<Float>, _ count: Int, _ image: Int) -> Int
  ) -> [DecodedCaption] {
    let imageCount = imageVectors.shape.first ?? 0
    var captions = emptyCaptions(imageCount)
    guard imageCount > 0 else { return captions }
    let V = model.vocabularySize
    var state = model.initialState(imageVectors: imageVectors)
    let logitsStorage = Tensor(zeros: [imageCount, V])  // [B, V], reused every step
    var logits = logitsStorage  // [rows, V]: a view of the first rows once rows have finished
    var imageOfRow = Array(0..<imageCount)  // row r of the state decodes image imageOfRow[r]
    var feed = [Int](repeating: Vocabulary.start, count: imageCount)  // token fed to each row
    var liveRows: [Int] = []
    liveRows.reserveCapacity(imageCount)

    for step in 0..<options.maxLength {
      model.step(tokens: feed, state: &state, logits: logits)
      liveRows.removeAll(keepingCapacity: true)
      for (r, image) in imageOfRow.enumerated() {
        let row = logits.pointer + r * V
        let logNormaliser = TokenChoice.logSumExp(row, count: V)
        TokenChoice.banTokens(row, count: V, history: captions[image].tokens, options: options)
        let token = choose(row, V, image)
        captions[image].logprob += Double(row[token]) - logNormaliser  // log softmax(logits)[token]
        if token == Vocabulary.end {
          captions[image].endedWithEnd = true
        } else {
          captions[image].tokens.append(token)
          liveRows.append(r)
        }
      }
      if liveRows.isEmpty || step == options.maxLength - 1 { break }
      if liveRows.count < imageOfRow.count {
        state = model.gather(state, rows: liveRows)
        imageOfRow = liveRows.map { imageOfRow[$0] }
        logits = logitsStorage.view(shape: [liveRows.count, V])
      }
      feed.removeAll(keepingCapacity: true)
      for image in imageOfRow { feed.append(captions[image].tokens.last!) }
    }
    return captions
  }
}
