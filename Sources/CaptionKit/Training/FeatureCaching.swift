import FoundationEssentials
import Glibc

/// The feature cache in training (SPEC §8): while the convolutions are frozen, what `encoder.fc`
/// reads for each image is computed once, during the first epoch's steps, and read from
/// `NAME.features` afterwards (the loaders skip decoding and convolving those images).
extension TrainingSession {
  /// `--feature-cache`, or `NAME.features` beside `--out`; one file per rank in a group (each
  /// rank fills the records of the images it meets).
  var featureCachePath: String {
    let path = options.featureCache ?? files.folder + "/" + files.stem + ".features"
    return group.size > 1 ? path + ".rank\(group.rank)" : path
  }

  /// Opens the cache and hands it to the loaders when the convolutions are frozen in the current
  /// epoch (the frozen epochs come first, so a run past them never needs it).
  func openFeatureCache(log: (String) -> Void) throws {
    guard options.noFeatureCache != true, epoch < options.epochs, options.encoderFrozen(inEpoch: epoch)
    else { return }
    let path = featureCachePath
    let cache = try FeatureCache(
      path: path, key: featureCacheKey(), featureCount: model.encoder.fcInputWidth,
      count: trainImages.count + valImages.count, replaceStale: options.featureCache == nil,
      stale: { reason in if self.group.isWriter { log("\(path): \(reason)") } })
    let options = self.options
    trainLoader.useFeatures(cache, firstRecord: 0, inEpochs: { options.encoderFrozen(inEpoch: $0) })
    featureCache = cache
    if group.isWriter {
      log("feature cache \(path): \(cache.filledCount) of \(cache.count) images stored")
    }
  }

  /// What the cached features depend on: the convolutions' weights, the layer list, the
  /// preprocessing (SPEC §4 at the model's size, mean, std), the pooling, and the image lists.
  func featureCacheKey() -> UInt64 {
    var key = Fingerprint()
    let config = model.config
    key.add("caption-features 1")
    key.add(config.layers.map(\.description).joined(separator: ","))
    key.add("pool \(config.pool.rawValue) size \(config.imageSize)")
    key.add("SPEC §4: shorter side to S (area), centre crop, 8-bit RGB; mean \(mean) std \(std)")
    for conv in model.encoder.convolutions {
      for tensor in [conv.weight.value, conv.bias.value] {
        key.add(UnsafeRawBufferPointer(start: tensor.pointer, count: tensor.count * MemoryLayout<Float>.size))
      }
    }
    for (name, images) in [("train", trainImages), ("val", valImages)] {
      key.add("\(name) \(images.count)")
      for image in images { key.add("\(image.id) \(image.path)") }
    }
    return key.value
  }

  /// Fills the rows of `batch.features` the cache did not hold: the frozen convolutions run on their
  /// images, and each result is stored as record `firstRecord + image index`. A cache that cannot
  /// be written is reported once; training goes on without storing.
  func encodeMissingFeatures(_ batch: inout TrainingBatch, firstRecord: Int) {
    guard let features = batch.features, !batch.rowsToEncode.isEmpty else { return }
    let computed = model.encoder.fcInput(batch.images, keepActivations: false)  // [M, F]
    let width = features.shape[1]
    for (i, row) in batch.rowsToEncode.enumerated() {
      let source = computed.pointer + i * width
      (features.pointer + row * width).update(from: source, count: width)
      guard let featureCache, !featureCacheFailed else { continue }
      do {
        try featureCache.store(firstRecord + batch.imageIndices[row], features: source)
      } catch {
        featureCacheFailed = true
        let reason = (error as? CaptionError)?.description ?? String(describing: error)
        StandardError.write("caption: \(reason); going on without storing features\n")
      }
    }
    batch.rowsToEncode = []
  }
}
