import ArgumentParser
import CaptionKit
import Foundation

struct Info: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "info", abstract: "Describe a model file.",
    discussion: """
      Prints the model's configuration, vocabulary size, parameter count per tensor group,
      preprocessing, and the training provenance kept in its metadata.

      Example:
        caption info models/shapes.safetensors
      """)

  @Argument(help: "The model file (.safetensors).")
  var model: String

  func run() throws {
    try reportingErrors {
      let file = try ModelFile.load(path: model)
      print(Info.describe(file, path: model), terminator: "")
    }
  }

  static func describe(_ file: ModelFile, path: String) -> String {
    let config = file.config
    var out = "model: \(path)\n"
    out += "config:\n"
    out += "  image_size  \(config.imageSize)\n"
    out += "  layers      [\(config.layers.map(\.description).joined(separator: ", "))]\n"
    out += "  pool        \(config.pool.rawValue)\n"
    out += "  dv          \(config.dv)\n"
    out += "  embed       \(config.embed)\n"
    out += "  hidden      \(config.hidden)\n"
    out += "  cell        \(config.cell.rawValue)\n"
    out += "  rnn_layers  \(config.rnnLayers)\n"
    out += "  image_input \(config.imageInput.rawValue)\n"
    out += "  vocab_size  \(config.vocabSize)\n"
    out += "  dropout     \(config.dropout)\n"

    let firstWords = file.vocabulary.words.dropFirst(4).prefix(10)
    out += "vocabulary: \(file.vocabulary.count) words"
    if !firstWords.isEmpty {
      out += " (first: \(firstWords.joined(separator: " "))\(file.vocabulary.count > 14 ? " ..." : ""))"
    }
    out += "\n"

    out += "parameters:\n"
    let groups = config.parameterGroups()
    let width = groups.map(\.group.count).max() ?? 0
    for (group, count) in groups {
      out += "  " + group.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + grouped(count) + "\n"
    }
    out +=
      "  " + "total".padding(toLength: width, withPad: " ", startingAt: 0) + "  "
      + grouped(groups.reduce(0) { $0 + $1.count }) + "\n"

    func list(_ values: [Float]) -> String { "[" + values.map { "\($0)" }.joined(separator: ", ") + "]" }
    out += "preprocessing: size \(config.imageSize), mean \(list(file.mean)), std \(list(file.std))\n"

    if let provenance = file.provenance {
      out += "provenance:\n"
      if let object = try? JSONSerialization.jsonObject(
        with: Data(provenance.utf8), options: [.fragmentsAllowed]),
        let pretty = try? JSONSerialization.data(
          withJSONObject: object,
          options: [.prettyPrinted, .sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])
      {
        for line in String(decoding: pretty, as: UTF8.self).split(
          separator: "\n", omittingEmptySubsequences: false)
        {
          out += "  " + line + "\n"
        }
      } else {
        out += "  " + provenance + "\n"
      }
    }
    return out
  }

  /// 1234567 → "1,234,567".
  static func grouped(_ value: Int) -> String {
    let digits = Array(String(value))
    var result = ""
    for (index, digit) in digits.enumerated() {
      if index > 0 && (digits.count - index) % 3 == 0 { result += "," }
      result.append(digit)
    }
    return result
  }
}
