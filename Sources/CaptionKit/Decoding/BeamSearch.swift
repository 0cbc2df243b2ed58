import FoundationEssentials
import Glibc

extension CaptionDecoder {
  /// One live hypothesis: a row of the model state.
  private struct Hypothesis {
    var image: Int
    var tokens: [Int]  // emitted words so far, without <start>
    var logprob: Double  // Σ log softmax of the emitted words
  }

  /// One possible extension of a live hypothesis.
  private struct Candidate {
    var row: Int  // the parent's row in the state
    var token: Int
    var logprob: Double  // the parent's log-probability plus this token's
  }

  /// Beam search with `beamSize` = K hypotheses per image, all images' hypotheses run as one batch of
  /// rows per step (at most B·K rows), reordered with `model.gather`.
  ///
  /// At each step every live row proposes its K' best allowed tokens (a partial selection of its
  /// logits), where K' is the image's beam width (K minus its captions finished so far); per image the
  /// K' best of these proposals are kept. A kept proposal ending in `<end>` is finished and leaves the
  /// beam (the image's width shrinks by one); at `maxLength` steps the live ones are cut and count as
  /// finished without `<end>`. Finished captions are ranked by `logprob / steps^α`. An image stops
  /// when its beam is empty, or when its best finished score is at least the best score any live
  /// hypothesis could still reach: a live log-probability lp ≤ 0 can only decrease and its length
  /// grows up to maxLength, so its final score is at most lp / maxLength^α (for α ≥ 0).
  public static func beamSearch<M: StepModel>(
    model: M, imageVectors: Tensor, options: DecodingOptions
  ) -> [DecodedCaption] {
    beamSearch(model: model, imageVectors: imageVectors, options: options, keepsAll: false).best
  }

  /// Every caption the beam search of `beamSearch` finishes, per image in the order finished (at most
  /// `beamSize` each): the search does not stop early, so an image's beam runs until `beamSize`
  /// captions ended with `<end>` or `maxLength` steps cut the live ones (SPEC §3b reranking).
  public static func beamCandidates<M: StepModel>(
    model: M, imageVectors: Tensor, options: DecodingOptions
  ) -> [[DecodedCaption]] {
    beamSearch(model: model, imageVectors: imageVectors, options: options, keepsAll: true).all
  }

  private static func beamSearch<M: StepModel>(
    model: M, imageVectors: Tensor, options: DecodingOptions, keepsAll: Bool
  ) -> (best: [DecodedCaption], all: [[DecodedCaption]]) {
    options.require()
    let imageCount = imageVectors.shape.first ?? 0
    var best = emptyCaptions(imageCount)
    var all = [[DecodedCaption]](repeating: [], count: keepsAll ? imageCount : 0)
    guard imageCount > 0 else { return (best, all) }
    let K = options.beamSize
    let V = model.vocabularySize
    let alpha = options.lengthPenaltyAlpha
    func score(_ logprob: Double, steps: Int) -> Double {
      alpha == 0 ? logprob : logprob / pow(Double(max(steps, 1)), alpha)
    }
    let bestReachableDivisor = alpha == 0 ? 1 : pow(Double(options.maxLength), alpha)

    var bestScore = [Double](repeating: -.infinity, count: imageCount)
    var hasFinished = [Bool](repeating: false, count: imageCount)
    var slots = [Int](repeating: K, count: imageCount)  // the beam's width left for each image
    var state = model.initialState(imageVectors: imageVectors)
    // rows are grouped by image, in image order
    var live = (0..<imageCount).map { Hypothesis(image: $0, tokens: [], logprob: 0) }
    let logitsStorage = Tensor(zeros: [imageCount * K, V])  // [B·K, V], reused every step
    var feed = [Int](repeating: Vocabulary.start, count: imageCount)
    var top: [Int] = []  // one row's best tokens
    top.reserveCapacity(K)
    var candidates: [Candidate] = []  // one image's proposals
    candidates.reserveCapacity(K * K)
    var nextLive: [Hypothesis] = []
    var parentRows: [Int] = []

    func finish(_ image: Int, _ caption: DecodedCaption) {
      if keepsAll { all[image].append(caption) }
      let s = score(caption.logprob, steps: caption.steps)
      if !hasFinished[image] || s > bestScore[image] {  // ties keep the one found first
        best[image] = caption
        bestScore[image] = s
        hasFinished[image] = true
      }
    }

    var logits = logitsStorage.view(shape: [imageCount, V])  // [rows, V]
    for step in 0..<options.maxLength {
      let rows = live.count
      if logits.shape[0] != rows { logits = logitsStorage.view(shape: [rows, V]) }
      model.step(tokens: feed, state: &state, logits: logits)
      let lastStep = step == options.maxLength - 1
      nextLive.removeAll(keepingCapacity: true)
      parentRows.removeAll(keepingCapacity: true)

      var groupStart = 0
      while groupStart < rows {
        let image = live[groupStart].image
        var groupEnd = groupStart
        while groupEnd < rows && live[groupEnd].image == image { groupEnd += 1 }
        let width = slots[image]  // K minus this image's captions finished with <end>

        // proposals: each row's `width` best allowed tokens
        candidates.removeAll(keepingCapacity: true)
        for r in groupStart..<groupEnd {
          let row = logits.pointer + r * V
          let logNormaliser = TokenChoice.logSumExp(row, count: V)
          TokenChoice.banTokens(row, count: V, history: live[r].tokens, options: options)
          TokenChoice.selectTop(row, count: V, k: width, into: &top)
          for token in top {
            let logprob = live[r].logprob + (Double(row[token]) - logNormaliser)
            candidates.append(Candidate(row: r, token: token, logprob: logprob))
          }
        }
        // at most K·K entries: a full sort is cheap; ties by row then token for determinism
        candidates.sort {
          $0.logprob != $1.logprob
            ? $0.logprob > $1.logprob : ($0.row != $1.row ? $0.row < $1.row : $0.token < $1.token)
        }

        let firstKept = nextLive.count
        for candidate in candidates.prefix(width) {
          let parent = live[candidate.row]
          if candidate.token == Vocabulary.end {
            finish(
              image, DecodedCaption(tokens: parent.tokens, logprob: candidate.logprob, endedWithEnd: true))
            slots[image] -= 1
          } else if lastStep {
            finish(
              image,
              DecodedCaption(
                tokens: parent.tokens + [candidate.token], logprob: candidate.logprob,
                endedWithEnd: false))
          } else {
            nextLive.append(
              Hypothesis(
                image: image, tokens: parent.tokens + [candidate.token], logprob: candidate.logprob))
            parentRows.append(candidate.row)
          }
        }
        // stop this image when no live hypothesis can still beat its best finished caption
        if !keepsAll && hasFinished[image] && alpha >= 0 {
          var bestReachable = -Double.infinity
          for h in nextLive[firstKept...] {
            bestReachable = max(bestReachable, h.logprob / bestReachableDivisor)
          }
          if bestScore[image] >= bestReachable {
            nextLive.removeSubrange(firstKept...)
            parentRows.removeSubrange(firstKept...)
          }
        }
        groupStart = groupEnd
      }

      if nextLive.isEmpty || lastStep { break }
      state = model.gather(state, rows: parentRows)
      swap(&live, &nextLive)
      feed.removeAll(keepingCapacity: true)
      for h in live { feed.append(h.tokens.last!) }
    }
    return (best, all)
  }
}
