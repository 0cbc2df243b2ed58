/// The standard image–sentence retrieval protocol (Karpathy & Fei-Fei; COCO-1K): N images, each with
/// its captions, scored all against all within folds of at most 1 000 images (the folds' results
/// averaged). Image → text: the rank of the best-ranked of the image's own captions among all the
/// fold's captions; text → image: the rank of the caption's image among the fold's images. Ranks are
/// 1-based; R@K is the fraction of queries whose rank is at most K; medr the median rank.
public enum RetrievalMetrics {
  public static let foldSize = 1000
  /// The keys of `evaluate`'s result, in SPEC §2's order.
  public static let keys = [
    "i2t-R@1", "i2t-R@5", "i2t-R@10", "i2t-medr", "t2i-R@1", "t2i-R@5", "t2i-R@10", "t2i-medr", "rsum",
  ]

  /// The metrics of unit image vectors `images` [N·D] and sentence vectors `sentences` [M·D] (row m
  /// describes image `imageOf[m]`), under SPEC §2's keys: `i2t-R@1 i2t-R@5 i2t-R@10 i2t-medr t2i-R@1
  /// t2i-R@5 t2i-R@10 t2i-medr` and `rsum` (the six recalls in percent, added). `scores` may replace
  /// the cosine (the generative ranker): score(image n, sentence m).
  public static func evaluate(
    imageCount: Int, imageOf: [Int], foldSize: Int = foldSize, score: (Int, Int) -> Float
  ) -> [String: Double] {
    precondition(imageCount > 0)
    var totals = [String: Double]()
    var folds = 0
    var start = 0
    while start < imageCount {
      let end = min(start + foldSize, imageCount)
      let sentences = imageOf.indices.filter { imageOf[$0] >= start && imageOf[$0] < end }
      let fold = foldMetrics(images: Array(start..<end), sentences: sentences, imageOf: imageOf, score: score)
      for (key, value) in fold { totals[key, default: 0] += value }
      folds += 1
      start = end
    }
    var result = totals.mapValues { $0 / Double(folds) }
    result["rsum"] =
      100
      * keys.filter { $0.contains("-R@") }.reduce(0) { $0 + (result[$1] ?? 0) }
    return result
  }

  /// Cosine scores of unit vectors: images [N, D], sentences [M, D].
  public static func evaluate(images: Tensor, sentences: Tensor, imageOf: [Int], foldSize: Int = foldSize)
    -> [String: Double]
  {
    let (N, D) = (images.shape[0], images.shape[1])
    let M = sentences.shape[0]
    let scores = Tensor(zeros: [N, M])
    Gemm.multiply(
      transA: false, transB: true, m: N, n: M, k: D, a: images.pointer, lda: D, b: sentences.pointer, ldb: D,
      accumulate: false, c: scores.pointer, ldc: M, workspace: PackedMatrix())
    return evaluate(imageCount: N, imageOf: imageOf, foldSize: foldSize) { scores.pointer[$0 * M + $1] }
  }

  private static func foldMetrics(
    images: [Int], sentences: [Int], imageOf: [Int], score: (Int, Int) -> Float
  ) -> [String: Double] {
    var i2t: [Int] = []
    for n in images {
      let own = sentences.filter { imageOf[$0] == n }
      guard !own.isEmpty else { continue }
      let best = own.map { score(n, $0) }.max()!
      // rank = 1 + the other images' captions scoring above the best own one (ties count for the query)
      i2t.append(1 + sentences.filter { imageOf[$0] != n && score(n, $0) > best }.count)
    }
    var t2i: [Int] = []
    for m in sentences {
      let own = score(imageOf[m], m)
      t2i.append(1 + images.filter { $0 != imageOf[m] && score($0, m) > own }.count)
    }
    var result: [String: Double] = [:]
    for (direction, ranks) in [("i2t", i2t), ("t2i", t2i)] {
      for k in [1, 5, 10] {
        result["\(direction)-R@\(k)"] = Double(ranks.filter { $0 <= k }.count) / Double(max(ranks.count, 1))
      }
      result["\(direction)-medr"] = median(ranks)
    }
    return result
  }

  /// The median of whole ranks (the mean of the middle two for an even count).
  static func median(_ values: [Int]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? Double(sorted[middle]) : Double(sorted[middle - 1] + sorted[middle]) / 2
  }
}
