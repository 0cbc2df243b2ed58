/// What the caption decoders (greedy, beam search, sampling) need from a model: one token at a time
/// for a batch of hypotheses, each a row of the state.
///
/// `CaptionModel` implements it; tests implement it with small hand-built tables.
public protocol StepModel {
  /// Per-hypothesis decoder state (hidden and cell states of every layer, the image term, the step).
  associatedtype State

  /// The number of token ids, the width of the logits.
  var vocabularySize: Int { get }

  /// The state before `<start>` for each row of `imageVectors` (`[rows, dv]`, from the encoder).
  func initialState(imageVectors: Tensor) -> State

  /// Feeds `tokens[r]` to row r, advances the state and writes the next-token logits into
  /// `logits` (`[rows, vocabularySize]`).
  func step(tokens: [Int], state: inout State, logits: Tensor)

  /// A state whose row r is row `rows[r]` of `state` (rows may repeat or be dropped).
  func gather(_ state: State, rows: [Int]) -> State
}

/// The caption model steps one token at a time for the decoders (Model/CaptionModel.swift).
extension CaptionModel: StepModel {
  public typealias State = RecurrentState
}
