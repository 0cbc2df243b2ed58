/// What the caption model's forward pass exposes to the training objective's auxiliary terms.
///
/// One batch of B images and R = B·K caption rows over T steps (time-major, row r shows image r / K).
public struct ObjectiveInput {
  /// `[B, Dv]`: the image vectors `v`.
  public var imageVectors: Tensor
  /// `[T·R, H]`: the decoder's top hidden states (after dropout), row `t·R + r`.
  public var topStates: Tensor
  /// `[T, R]`: the targets (`w1 … wn <end> <pad> …`).
  public var targetTokens: [Int]
  public var steps: Int
  public var captionsPerImage: Int
  /// `[B]`: the images' dataset ids.
  public var imageIds: [Int]
}

/// Which tensor of `ObjectiveInput` a term reads, and so where its gradient goes back in.
public enum ObjectiveTermSource: Sendable {
  /// `imageVectors`: the gradient enters the encoder's output (dv).
  case imageVectors
  /// `topStates`: the gradient enters the decoder's top states (dh), before the recurrence.
  case topStates
}

/// An auxiliary term of the training objective: a training-only head with its own loss on the image
/// vectors or on the decoder's top states. The objective is
///
///     objective = caption cross-entropy + Σ_terms weight · loss_term
///
/// A term owns its head (saved in the training state, not the model file, under `parameters`' names),
/// its weight and its log key (`<name>_loss`, SPEC §8).
public protocol ObjectiveTerm: AnyObject {
  /// The log key's stem and the state's head prefix (`word` → `word_loss`, `word_head.weight`).
  var name: String { get }
  var weight: Float { get }
  var source: ObjectiveTermSource { get }
  /// The head's parameters under their training-state names.
  var parameters: [(String, Parameter)] { get }
  /// The term's loss (before its weight) for one batch; nil when it does not apply to this batch.
  /// Keeps what `backward` needs.
  func forward(_ input: ObjectiveInput) -> Float?
  /// After a forward that returned a loss: accumulates the head's gradients and adds
  /// weight · dloss/d(source) into `gradient` (`[B, Dv]` or `[T·R, H]`).
  func backward(into gradient: Tensor)
}
