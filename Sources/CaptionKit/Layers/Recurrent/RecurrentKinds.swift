/// The recurrent cell of the decoder (SPEC §3).
public enum CellType: String, Codable, CaseIterable, Sendable {
  case lstm, gru, rnn, peephole, coupled

  /// Gate blocks per hidden unit: the rows of `weight_ih` are `gates · hidden`.
  public var gates: Int {
    switch self {
    case .lstm, .peephole: return 4
    case .gru, .coupled: return 3
    case .rnn: return 1
    }
  }
}

/// Where the image vector enters the decoder (SPEC §3).
public enum ImageInput: String, Codable, Sendable { case every, first }
