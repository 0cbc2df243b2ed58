/// The auxiliary word loss (training only): from the image vector alone, predict which words the
/// image's captions use, as independent yes/no questions (multi-label, in the spirit of the word
/// detectors of Fang et al., "From captions to visual concepts and back", 2015):
///
///     wordLogits = head(v)                                  // [B, V], head: Linear(Dv → V)
///     present[b, w] = 1 if word w occurs in a target caption of image b (ids < 4 left out)
///     loss_words = mean binary cross-entropy(wordLogits, present) over B × (V − 4)
///
/// The caption loss reaches the encoder only through the decoder, and early in training that
/// signal barely says what the objects are (on the shapes data, shape words stay at chance for
/// thousands of steps while colours are learnt at once). This loss tells the encoder directly which
/// content words to make recognisable. Its `weight` scales its gradient into `v`.
public final class WordLoss: ObjectiveTerm {
  public let auxiliary: AuxiliaryHead
  public var head: Linear { auxiliary.head }
  public let name = "word"
  public var weight: Float { auxiliary.weight }
  public let source = ObjectiveTermSource.imageVectors
  public var parameters: [(String, Parameter)] { auxiliary.namedParameters }

  public init(imageSize dv: Int, vocabularySize: Int, weight: Float) {
    // Columns of the special tokens (ids < 4) are left out; the others share one mean.
    let words = vocabularySize - Vocabulary.firstWord
    let columnWeights = (0..<vocabularySize).map { $0 < Vocabulary.firstWord ? 0 : 1 / Float(words) }
    auxiliary = AuxiliaryHead(name: "word_head", inputSize: dv, columnWeights: columnWeights, weight: weight)
  }

  /// The word loss of image vectors `v` [B, Dv] given the decoder's targets `[T, B·K]`
  /// (time-major; row r belongs to image r / K).
  public func forward(v: Tensor, targetTokens: [Int], steps: Int, captionsPerImage k: Int) -> Float {
    let (rows, vocabulary) = (v.shape[0] * k, head.outFeatures)
    precondition(targetTokens.count == steps * rows)
    return auxiliary.forward(v: v) { present in
      for t in 0..<steps {
        for r in 0..<rows {
          let token = targetTokens[t * rows + r]
          if token >= Vocabulary.firstWord && token < vocabulary {
            present.pointer[(r / k) * vocabulary + token] = 1
          }
        }
      }
    }
  }

  public func forward(_ input: ObjectiveInput) -> Float? {
    forward(
      v: input.imageVectors, targetTokens: input.targetTokens, steps: input.steps,
      captionsPerImage: input.captionsPerImage)
  }

  public func backward(into gradient: Tensor) {
    // weight · dloss/dv [B, Dv]
    Elementwise.add(auxiliary.backward().pointer, into: gradient.pointer, count: gradient.count)
  }
}
