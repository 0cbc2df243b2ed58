/// What the familiarity score reads (SPEC §3c `familiar_features`).
public enum FamiliarityFeatures: String, Codable, Equatable, Sendable {
  /// v [D_v] (the first calibrations; a file without the key).
  case imageVector = "image_vector"
  /// `Encoder.blockMeans` [ModelConfig.blockMeansWidth].
  case blockMeans = "block_means"
}

/// Whether an image is like the images a model was trained on (SPEC §3c), from what the encoder
/// computes anyway, so that every model can have it (no retrieval part needed): the Mahalanobis
/// distance of the image's features f from the calibration images' f, per dimension,
///
///     z     = W (f − mean)                      // W = L⁻¹, L Lᵀ = Σ + δI (Cholesky), Σ their covariance
///     score = (1/D) ‖z‖²                        // ≈ 1 for an image like them, large for another kind
///     familiar = score ≤ threshold              // threshold: a high percentile of their own scores
///
/// f is the encoder's block means: each max-pool's output averaged per channel, the blocks
/// concatenated (Lee et al.'s multi-layer Mahalanobis detector, with one Gaussian). A photograph
/// still maps to a scene-like v (v is trained to say what is in a scene), but its mid-level
/// statistics (textures, gradients, colour mixtures) lie far from any rendered scene's, and more in
/// the correlations between channels than in each channel's range: the full covariance sees that.
/// Older files score v itself. δ = 10⁻² × the mean variance keeps Σ invertible (channels no
/// calibration image switches on) and the estimate from a few hundred images steady.
public struct Familiarity: Equatable, Sendable {
  public static let meanName = "familiarity.mean"
  public static let whitenName = "familiarity.whiten"
  /// The held-out score percentile the threshold is set at, and the margin it is multiplied by.
  public static let percentile = 0.99
  public static let margin: Float = 1.0
  /// δ of Σ + δI, as a fraction of the mean variance.
  public static let shrinkage = 1e-2

  /// The calibration images' mean v [Dv], and W [Dv, Dv] (lower triangular, row-major).
  public var mean: [Float]
  public var whiten: [Float]
  public var threshold: Float
  /// What the score reads.
  public var features: FamiliarityFeatures

  public init(mean: [Float], whiten: [Float], threshold: Float, features: FamiliarityFeatures = .blockMeans) {
    precondition(whiten.count == mean.count * mean.count, "W must be D × D")
    self.mean = mean
    self.whiten = whiten
    self.threshold = threshold
    self.features = features
  }

  /// The verdicts of the images whose encoder pass just gave `imageVectors` [n, Dv]: read from the
  /// vectors or from `encoder.blockMeans` of that pass, as `features` says.
  public func verdicts(imageVectors: Tensor, encoder: Encoder) -> [Bool] {
    verdicts(features == .blockMeans ? encoder.blockMeans : imageVectors)
  }

  /// The score of each row of `vectors` ([n, D]).
  public func scores(_ vectors: Tensor) -> [Float] {
    let (rows, dv) = (vectors.shape[0], vectors.shape[1])
    precondition(dv == mean.count, "features of \(dv) dimensions, familiarity of \(mean.count)")
    var centred = [Float](repeating: 0, count: dv)  // v − mean
    var result = [Float](repeating: 0, count: rows)
    for r in 0..<rows {
      let v = vectors.pointer + r * dv
      for i in 0..<dv { centred[i] = v[i] - mean[i] }
      var sum: Float = 0
      for i in 0..<dv {
        var z: Float = 0  // row i of W (lower triangular) times v − mean
        for j in 0...i { z += whiten[i * dv + j] * centred[j] }
        sum += z * z
      }
      result[r] = sum / Float(dv)
    }
    return result
  }

  /// Whether each row of `vectors` ([n, D]) is familiar.
  public func verdicts(_ vectors: Tensor) -> [Bool] {
    scores(vectors).map { $0 <= threshold }
  }

  /// The calibration of `vectors` ([n, D], n ≥ 4: the calibration images' features of the kind
  /// `features`): their mean and W
  /// from their shrunk covariance, and a threshold of `margin` × the `percentile` of held-out
  /// scores: each half of the rows (even, odd) scored by the statistics of the other half. (Scores
  /// of the very images the statistics came from are too low when n is not ≫ Dv.)
  public static func calibrate(vectors: Tensor, features: FamiliarityFeatures = .blockMeans) -> Familiarity {
    let (rows, dv) = (vectors.shape[0], vectors.shape[1])
    precondition(rows >= 4, "calibrating needs at least four images")
    func rowsOf(_ parity: Int) -> Tensor {
      let picked = stride(from: parity, to: rows, by: 2).map { $0 }
      let t = Tensor(zeros: [picked.count, dv])
      for (k, r) in picked.enumerated() {
        (t.pointer + k * dv).update(from: vectors.pointer + r * dv, count: dv)
      }
      return t
    }
    let (even, odd) = (rowsOf(0), rowsOf(1))
    let heldOut = (statistics(odd).scores(even) + statistics(even).scores(odd)).sorted()
    var familiarity = statistics(vectors)
    let index = min(Int((percentile * Double(heldOut.count - 1)).rounded(.up)), heldOut.count - 1)
    familiarity.threshold = margin * heldOut[index]
    familiarity.features = features
    return familiarity
  }

  /// The mean and W of `vectors` ([n, Dv], n ≥ 2), with a threshold of 0.
  static func statistics(_ vectors: Tensor) -> Familiarity {
    let (rows, dv) = (vectors.shape[0], vectors.shape[1])
    precondition(rows >= 2, "calibrating needs at least two images")
    var mean = [Double](repeating: 0, count: dv)
    for r in 0..<rows {
      for i in 0..<dv { mean[i] += Double(vectors.pointer[r * dv + i]) / Double(rows) }
    }
    // Σ (lower triangle) = 1/(n−1) Σ_r (v_r − mean)(v_r − mean)ᵀ
    var covariance = [Double](repeating: 0, count: dv * dv)
    var centred = [Double](repeating: 0, count: dv)
    for r in 0..<rows {
      for i in 0..<dv { centred[i] = Double(vectors.pointer[r * dv + i]) - mean[i] }
      for i in 0..<dv {
        for j in 0...i { covariance[i * dv + j] += centred[i] * centred[j] }
      }
    }
    var trace = 0.0
    for i in 0..<dv {
      for j in 0...i { covariance[i * dv + j] /= Double(rows - 1) }
      trace += covariance[i * dv + i]
    }
    let delta = max(shrinkage * trace / Double(dv), 1e-12)
    for i in 0..<dv { covariance[i * dv + i] += delta }
    // Cholesky: L Lᵀ = Σ + δI, then W = L⁻¹ by forward substitution, column by column.
    var l = [Double](repeating: 0, count: dv * dv)
    for i in 0..<dv {
      for j in 0...i {
        var sum = covariance[i * dv + j]
        for k in 0..<j { sum -= l[i * dv + k] * l[j * dv + k] }
        l[i * dv + j] = i == j ? max(sum, delta).squareRoot() : sum / l[j * dv + j]
      }
    }
    var w = [Double](repeating: 0, count: dv * dv)
    for column in 0..<dv {
      for i in column..<dv {
        var sum = i == column ? 1.0 : 0.0
        for k in column..<i { sum -= l[i * dv + k] * w[k * dv + column] }
        w[i * dv + column] = sum / l[i * dv + i]
      }
    }
    return Familiarity(mean: mean.map { Float($0) }, whiten: w.map { Float($0) }, threshold: 0)
  }

  /// The model file's calibration, or nil when it has none.
  public init?(file: ModelFile) {
    guard let threshold = file.config.familiarThreshold, let mean = file.tensors[Familiarity.meanName],
      let whiten = file.tensors[Familiarity.whitenName]
    else { return nil }
    self.init(
      mean: mean.array, whiten: whiten.array, threshold: threshold,
      features: file.config.familiarFeatures ?? .imageVector)
  }

  /// Puts this calibration into `file` (config key and tensors), replacing any other.
  public func store(in file: inout ModelFile) {
    file.config.familiarThreshold = threshold
    file.config.familiarFeatures = features
    file.tensors[Familiarity.meanName] = Tensor(shape: [mean.count], values: mean)
    file.tensors[Familiarity.whitenName] = Tensor(shape: [mean.count, mean.count], values: whiten)
  }

  /// Takes any calibration out of `file`.
  public static func remove(from file: inout ModelFile) {
    file.config.familiarThreshold = nil
    file.config.familiarFeatures = nil
    file.tensors[meanName] = nil
    file.tensors[whitenName] = nil
  }
}
