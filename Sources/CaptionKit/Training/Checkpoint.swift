import FoundationEssentials
import Glibc

/// Saving and restoring what `--resume` needs beyond the weights.
extension Adam {
  /// The moments under `m.<name>` and `v.<name>`, `names` in the order of `parameters`.
  func namedMoments(names: [String]) -> [(name: String, tensor: Tensor)] {
    zip(names, moments).flatMap { name, moment in [("m." + name, moment.m), ("v." + name, moment.v)] }
  }

  /// Copies saved moments back (see `namedMoments`).
  func restore(from tensors: [String: Tensor], names: [String], path: String) throws {
    for (name, moment) in zip(names, moments) {
      for (key, target) in [("m." + name, moment.m), ("v." + name, moment.v)] {
        guard let saved = tensors[key], saved.shape == target.shape else {
          throw CaptionError(
            .badModel, path: path, "optimizer state \(key) is missing or has the wrong shape")
        }
        target.copy(from: saved)
      }
    }
  }
}

extension ModelFile {
  /// The optimiser step recorded in the provenance of a model written by `caption train`.
  var provenanceStep: Int? {
    guard let provenance,
      case .object(let object)? = try? JSONValue.parse(Array(provenance.utf8), file: "provenance")
    else { return nil }
    return object["step"]?.integerValue
  }
}
