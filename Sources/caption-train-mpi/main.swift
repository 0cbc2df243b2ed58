import CaptionKit
import Foundation

// `caption train` hands over to this executable when it runs as one rank of `mpirun -np N` (N ≥ 2),
// after parsing and checking its flags:
//
//     caption-train-mpi --options JSON [--resume]
//
// JSON is the run's TrainOptions (as the training state keeps them). Every rank trains its share of
// each batch (SPEC §8, "Several processes"); rank 0 alone writes the files and prints.
//
//     caption-train-mpi --check-sum FOLDER PARTS
//
// checks the gradients' sum (for the tests): rank r reads FOLDER/in.r (Float32 values, little
// endian), cuts them into PARTS consecutive parts summed together as a step's buckets are, and
// writes the sums to FOLDER/out.r.

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.count == 3, arguments[0] == "--check-sum", let parts = Int(arguments[2]), parts > 0 {
  checkSum(folder: arguments[1], parts: parts)
}
guard arguments.count >= 2, arguments[0] == "--options", arguments.count <= 3,
  arguments.count == 2 || arguments[2] == "--resume"
else {
  FileHandle.standardError.write(
    Data("usage: caption-train-mpi --options JSON [--resume] (run by caption train under mpirun)\n".utf8))
  exit(64)
}
if let problem = PeakFlops.forceFromEnvironment() {  // SPEC §2, as in `caption`
  FileHandle.standardError.write(Data("caption: \(problem)\n".utf8))
  exit(1)
}
let decoder = JSONDecoder()
decoder.nonConformingFloatDecodingStrategy = .convertFromString(
  positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
guard let options = try? decoder.decode(TrainOptions.self, from: Data(arguments[1].utf8)) else {
  FileHandle.standardError.write(Data("caption-train-mpi: the options do not decode\n".utf8))
  exit(64)
}

/// Trains; never returns (the exit status: 0, 1 on an error, 130 when stopped).
func train(options: TrainOptions, resume: Bool) -> Never {
  let group = MPIGroup()
  /// Rank 0's lines go to stderr as `caption train`'s do; the other ranks keep quiet.
  let say: (String) -> Void = { [isWriter = group.isWriter] line in
    if isWriter {
      FileHandle.standardError.write(Data((PrintableText.escaped(line, limit: 2000) + "\n").utf8))
    }
  }

  let trainer = Trainer(options: options, log: say, group: group)
  do {
    let summary = try trainer.run(resume: resume)
    say(
      String(
        format: "trained %d steps over %d epochs in %.0f s (%.1f images/s) on %d ranks", summary.steps,
        summary.epochsDone, summary.seconds, summary.imagesPerSecond, group.size))
    if ProcessInfo.processInfo.environment["CAPTION_MPI_REPORT"] != nil {
      FileHandle.standardError.write(
        Data(
          String(
            format: "rank %d: %.3f s exchanging, %d bytes sent over %d steps\n", group.rank,
            group.secondsExchanging, group.bytesSent, summary.steps
          ).utf8))
    }
    if summary.interrupted {
      say("interrupted: the latest state is saved at \(summary.files.state); continue with --resume")
      group.finish()
      exit(130)
    }
    say("latest model and state: \(summary.files.latest), \(summary.files.state)")
    group.finish()
    exit(0)
  } catch is Interrupted {
    say("interrupted before the first step: nothing was saved")
    group.finish()
    exit(130)
  } catch {
    // An error every rank meets alike (a start-up mismatch, a bad model) is best told once: the
    // other ranks give rank 0 a moment to say it and end the job; one of their own, they tell.
    if !group.isWriter { sleep(2) }
    group.stop(
      (error as? CaptionError).map { PrintableText.escaped($0.description, limit: 2000) } ?? "\(error)")
  }
}

train(options: options, resume: arguments.count == 3)

/// The ring sum of FOLDER/in.RANK over the ranks, in `parts` sums in flight together, to
/// FOLDER/out.RANK.
func checkSum(folder: String, parts: Int) -> Never {
  let group = MPIGroup()
  let input = folder + "/in.\(group.rank)"
  guard let data = FileManager.default.contents(atPath: input), data.count % 4 == 0 else {
    group.stop("\(input): cannot read Float32 values")
  }
  var values = [Float](repeating: 0, count: data.count / 4)
  _ = values.withUnsafeMutableBytes { data.copyBytes(to: $0) }
  do {
    try values.withUnsafeMutableBufferPointer { values in
      for part in 0..<parts {
        let range = (part * values.count / parts)..<((part + 1) * values.count / parts)
        try group.startSum(UnsafeMutableBufferPointer(rebasing: values[range]))
      }
      try group.finishSums()
      try AtomicFile.write(UnsafeRawBufferPointer(values), to: folder + "/out.\(group.rank)")
    }
  } catch {
    group.stop("\(error)")
  }
  group.finish()
  exit(0)
}
