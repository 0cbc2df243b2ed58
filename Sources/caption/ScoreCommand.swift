import ArgumentParser
import CaptionKit
import FoundationEssentials
import Glibc

struct Score: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "score", abstract: "Score COCO-format results against references.",
    discussion: """
      Computes BLEU-1..4, ROUGE-L and CIDEr-D as the COCO caption evaluation (pycocoevalcap 1.2) \
      does, after its PTB tokenisation. Only images that have a result are scored; reference images \
      without a result are counted in a warning.

      Examples:
        caption score --results results.json --references captions_val.json
        caption score --results results.json --references captions_val.json --json
      """)

  @Option(help: "COCO-format results: [{\"image_id\": ID, \"caption\": TEXT}, ...].")
  var results: String

  @Option(help: "COCO captions JSON holding the reference captions.")
  var references: String

  @Flag(help: "Print one JSON object with the six scores instead of a table.")
  var json = false

  func run() throws {
    try reportingErrors {
      let referenceFile = try COCOFiles.readReferences(references)
      let resultEntries = try COCOFiles.readResults(results)
      let run = try COCOFiles.score(
        results: resultEntries, references: referenceFile, resultsPath: results, referencesPath: references)
      if run.referencesWithoutResult > 0 {
        printError(
          "warning: \(run.referencesWithoutResult) of \(referenceFile.imageIDs.count) reference images have no result and were not scored"
        )
      }
      let values = run.scores.jsonObject()
      if json {
        let fields = CaptionScores.keys.map { "\"\($0)\": \(values[$0]!)" }
        StandardOutput.line("{" + fields.joined(separator: ", ") + "}")
      } else {
        StandardOutput.line("images scored: \(run.scores.imageCount)")
        for key in CaptionScores.keys {
          let padded = key.padded(to: 8)
          StandardOutput.line("\(padded) \(String(cFormat: "%.4f", values[key]!))")
        }
      }
    }
  }
}
