/// One batch for training or validation: B images and K captions for each (SPEC §3's decoder input).
///
/// Tokens are time-major: step t of row r is at `t * rows + r`, and row r belongs to image `r / K`.
/// A row with caption `w1 … wn` reads `<start> w1 … wn <pad> …` and must predict
/// `w1 … wn <end> <pad> …` (`<pad>` = 0 is ignored by the loss).
public struct TrainingBatch {
  /// The epoch and the position of this batch in it (what `--resume` records: continue at `index + 1`).
  public var epoch: Int
  public var index: Int
  /// `[B, 3, S, S]`, normalised with the model's mean and std. B may be below the loader's batch
  /// size at the end of an epoch or when images failed to load.
  public var images: Tensor
  /// With the feature cache: `[B, F]`, what the frozen encoder's `fc` reads for each image. The rows
  /// `rowsToEncode` are not in the cache yet: their images are `images` (`[M, 3, S, S]`, in that
  /// order), and the training step computes and stores them. Nil: every image is in `images`.
  public var features: Tensor? = nil
  public var rowsToEncode: [Int] = []
  /// The dataset ids of the B images, and their positions in the loader's image list.
  public var imageIds: [Int]
  public var imageIndices: [Int]
  /// K.
  public var captionsPerImage: Int
  /// T = the longest caption of the batch (in words) + 1.
  public var steps: Int
  /// `[T, B·K]`: `<start> w1 … wn` then `<pad>`.
  public var inputTokens: [Int]
  /// `[T, B·K]`: `w1 … wn <end>` then `<pad>`.
  public var targetTokens: [Int]

  /// B.
  public var batchSize: Int { imageIds.count }
  /// B·K, the decoder's rows.
  public var rows: Int { imageIds.count * captionsPerImage }
  /// The number of non-pad targets (the loss's denominator).
  public var targetCount: Int { targetTokens.reduce(0) { $0 + ($1 == Vocabulary.pad ? 0 : 1) } }

  /// The time-major input and target tokens for `captions` (one word-id list per row).
  public static func tokenLayout(_ captions: [[Int]]) -> (steps: Int, input: [Int], target: [Int]) {
    let rows = captions.count
    guard rows > 0 else { return (0, [], []) }
    let steps = (captions.map(\.count).max() ?? 0) + 1
    var input = [Int](repeating: Vocabulary.pad, count: steps * rows)
    var target = [Int](repeating: Vocabulary.pad, count: steps * rows)
    for (r, words) in captions.enumerated() {
      input[r] = Vocabulary.start  // t = 0
      for (t, word) in words.enumerated() {
        input[(t + 1) * rows + r] = word  // fed at step t + 1
        target[t * rows + r] = word  // predicted at step t
      }
      target[words.count * rows + r] = Vocabulary.end
    }
    return (steps, input, target)
  }
}
