/// The shapes data's auxiliary terms of the training objective (SPEC §9): the scene loss on the image
/// vectors and the mention loss on the decoder's top states, both answered from `scenes.json`.
public enum ShapesObjective {
  /// The terms whose weight is above 0, with fresh heads (each drawn from its own seed, so the
  /// model's weights do not depend on which are on). `imageIds` are the training images,
  /// `vocabulary` theirs; `scenesPath` names the scenes file in errors.
  public static func terms(
    sceneWeight: Float, mentionWeight: Float, scenes: [Int: Scene], scenesPath: String, imageIds: [Int],
    vocabulary: Vocabulary, imageSize dv: Int, hiddenSize: Int, seed: UInt64, log: (String) -> Void
  ) throws -> [any ObjectiveTerm] {
    var terms: [any ObjectiveTerm] = []
    if sceneWeight > 0 {
      let sceneLoss = try SceneLoss(
        scenes: scenes, imageIds: imageIds, imageSize: dv, weight: sceneWeight, path: scenesPath)
      var generator = SeededGenerator(seed: seed &+ 0x5C3E_7E)
      sceneLoss.auxiliary.initialize(using: &generator)
      terms.append(sceneLoss)
      log("scene loss: \(sceneLoss.labels.summary) from \(scenesPath), weight \(sceneWeight)")
    }
    if mentionWeight > 0 {
      let mentionLoss = try MentionLoss(
        scenes: scenes, imageIds: imageIds, vocabulary: vocabulary, hiddenSize: hiddenSize,
        weight: mentionWeight,
        path: scenesPath)
      var generator = SeededGenerator(seed: seed &+ 0x3E_7C10)
      mentionLoss.auxiliary.initialize(using: &generator)
      terms.append(mentionLoss)
      log("mention loss: \(mentionLoss.summary), weight \(mentionWeight)")
    }
    return terms
  }
}
