import Foundation
import XCTest

@testable import CaptionKit

/// ‖a − b‖₂ / ‖b‖₂: a Float result against its Double-precision reference.
func relativeL2Error(_ a: [Float], _ b: [Double]) -> Double {
  precondition(a.count == b.count)
  var (difference, norm) = (0.0, 0.0)
  for i in 0..<b.count {
    difference += (Double(a[i]) - b[i]) * (Double(a[i]) - b[i])
    norm += b[i] * b[i]
  }
  return (difference / max(norm, 1e-300)).squareRoot()
}

/// The package's root folder (where Package.swift is).
let packageRoot: String = URL(fileURLWithPath: #filePath)
  .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// A committed fixture: `Tests/CaptionKitTests/Fixtures/<relative>`.
func fixturePath(_ relative: String) -> String {
  packageRoot + "/Tests/CaptionKitTests/Fixtures/" + relative
}

/// A file or folder of the vendored image corpus: `Tests/CaptionKitTests/Fixtures/corpus/<relative>`
/// (sources and licences in its README.md). A missing one fails the test, naming the path; no skip.
func corpusFile(_ relative: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
  let path = fixturePath("corpus/" + relative)
  guard FileManager.default.fileExists(atPath: path) else {
    XCTFail("test corpus file missing: \(path)", file: file, line: line)
    throw CaptionError(.unreadable, path: path, "missing test corpus file")
  }
  return path
}

/// One parent folder for this test process's temporary folders, removed when the process exits.
private let temporaryParent: String = {
  let path = NSTemporaryDirectory() + "caption-tests-\(ProcessInfo.processInfo.processIdentifier)"
  try? FileManager.default.removeItem(atPath: path)
  try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  atexit { removeTemporaryParent() }
  return path
}()

private func removeTemporaryParent() { try? FileManager.default.removeItem(atPath: temporaryParent) }

/// A fresh temporary folder for one test (inside the process's parent, removed at exit).
func temporaryFolder() -> String {
  let path = temporaryParent + "/" + UUID().uuidString
  try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}

/// Checks an analytic gradient against central finite differences of `loss`, in the style of
/// neuraltalk2's gradcheck: for `samples` elements of `x` (seeded choice), the numerical derivative
/// (loss(x+ε) − loss(x−ε)) / 2ε must agree with `analytic` to within `tolerance` relative error,
/// |a − n| / max(|a| + |n|, floor). `loss` must recompute the forward pass from `x`'s current values
/// and should accumulate in Double.
func assertGradientMatches(
  _ name: String, x: Tensor, analytic: Tensor, samples: Int = 24, epsilon: Float = 1e-2,
  tolerance: Double = 2e-2, floor: Double = 1e-3, seed: UInt64 = 7,
  file: StaticString = #filePath, line: UInt = #line, loss: () -> Double
) {
  precondition(x.count == analytic.count)
  var generator = SeededGenerator(seed: seed)
  let picks =
    x.count <= samples
    ? Array(0..<x.count) : (0..<samples).map { _ in Int(generator.next() % UInt64(x.count)) }
  var worst = 0.0
  for index in picks {
    let saved = x[index]
    x[index] = saved + epsilon
    let plus = loss()
    x[index] = saved - epsilon
    let minus = loss()
    x[index] = saved
    let numerical = (plus - minus) / (2 * Double(epsilon))
    let exact = Double(analytic[index])
    let error = abs(exact - numerical) / max(abs(exact) + abs(numerical), floor)
    worst = max(worst, error)
    if error > tolerance {
      XCTFail(
        "\(name)[\(index)]: analytic \(exact) vs numerical \(numerical) (relative error \(error) > \(tolerance))",
        file: file, line: line)
      return
    }
  }
  _ = worst
}

/// A tensor of seeded uniform values in [-scale, scale].
func randomTensor(_ shape: [Int], scale: Float = 1, seed: UInt64) -> Tensor {
  var generator = SeededGenerator(seed: seed)
  let t = Tensor(zeros: shape)
  for i in 0..<t.count { t[i] = Float.random(in: -scale...scale, using: &generator) }
  return t
}

/// What a run of the built `caption` executable did.
struct CommandRun {
  let status: Int32
  let stdout: String
  let stderr: String
}

/// Runs the `caption` executable built beside the test bundle (`swift test` builds it), with
/// OPENBLAS_NUM_THREADS=1 and no CAPTION_MODEL (plus `environment`), in `directory` when given,
/// feeding `stdin` when given. With `stdoutFile`, its stdout goes to that file (e.g. /dev/full)
/// instead of being collected. With `timeout`, a run still going after that many seconds is killed
/// and fails the test (a hang becomes a failure).
func runCaption(
  _ arguments: [String], stdin: String? = nil, stdoutFile: String? = nil, timeout: Double? = nil,
  environment extra: [String: String] = [:], directory: String? = nil,
  file: StaticString = #filePath, line: UInt = #line
) throws -> CommandRun {
  let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
  let executable = folder.appendingPathComponent("caption")
  guard FileManager.default.isExecutableFile(atPath: executable.path) else {
    XCTFail("the caption executable is not built at \(executable.path)", file: file, line: line)
    throw CaptionError(.unreadable, path: executable.path, "missing executable")
  }
  let process = Process()
  process.executableURL = executable
  process.arguments = arguments
  var environment = ProcessInfo.processInfo.environment
  environment["OPENBLAS_NUM_THREADS"] = "1"
  environment.removeValue(forKey: "CAPTION_MODEL")
  environment.merge(extra) { $1 }
  process.environment = environment
  if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
  let output = Pipe()
  let errors = Pipe()
  let input = Pipe()
  if let stdoutFile {
    guard let handle = FileHandle(forWritingAtPath: stdoutFile) else {
      throw CaptionError(.unreadable, path: stdoutFile, "cannot open for the command's stdout")
    }
    process.standardOutput = handle
  } else {
    process.standardOutput = output
  }
  process.standardError = errors
  process.standardInput = input
  try process.run()
  if stdoutFile != nil { try output.fileHandleForWriting.close() }
  let killed = LockedData()
  if let timeout {
    let pid = process.processIdentifier
    Thread.detachNewThread {
      let deadline = Date(timeIntervalSinceNow: timeout)
      while process.isRunning && Date() < deadline { usleep(20_000) }
      if process.isRunning {
        killed.set(Data())
        kill(pid, SIGKILL)
      }
    }
  }
  if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
  try input.fileHandleForWriting.close()
  // Read stderr on another thread so that neither pipe can fill up and block the child.
  let errorData = LockedData()
  let reader = Thread { errorData.set(errors.fileHandleForReading.readDataToEndOfFile()) }
  reader.start()
  let out = output.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  while !errorData.isSet { usleep(1000) }
  if killed.isSet {
    XCTFail(
      "caption \(arguments.joined(separator: " ")) still ran after \(timeout ?? 0) s", file: file, line: line)
  }
  return CommandRun(
    status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self),
    stderr: String(decoding: errorData.value, as: UTF8.self))
}

/// Data handed from one thread to another.
final class LockedData: @unchecked Sendable {
  private let lock = NSLock()
  private var data: Data?
  func set(_ value: Data) { lock.withLock { data = value } }
  var isSet: Bool { lock.withLock { data != nil } }
  var value: Data { lock.withLock { data ?? Data() } }
}

/// The 3×3 convolution (stride 1, padding 1, plus bias, optional ReLU) as a direct loop in Double,
/// the tests' reference for every fast path, with dL/dinput, dL/dweight, dL/dbias of
/// L = Σ dY ⊙ conv(x), the ReLU mask taken from the Double-precision pre-activation (> 0).
func referenceConvolution(
  input: Tensor, weight: Tensor, bias: Tensor, outputGrad: Tensor, relu: Bool
) -> (output: [Double], input: [Double], weight: [Double], bias: [Double]) {
  let (batch, cin, height, width) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
  let cout = weight.shape[0]
  var output = [Double](repeating: 0, count: batch * cout * height * width)
  var dInput = [Double](repeating: 0, count: input.count)
  var dWeight = [Double](repeating: 0, count: weight.count)
  var dBias = [Double](repeating: 0, count: cout)
  for b in 0..<batch {
    for co in 0..<cout {
      for y in 0..<height {
        for x in 0..<width {
          // out = bias + Σ w[co, ci, ky, kx] · in[b, ci, y + ky − 1, x + kx − 1]
          var sum = Double(bias[co])
          for ci in 0..<cin {
            for ky in 0..<3 {
              for kx in 0..<3 {
                let (iy, ix) = (y + ky - 1, x + kx - 1)
                if iy < 0 || iy >= height || ix < 0 || ix >= width { continue }
                sum +=
                  Double(weight[((co * cin + ci) * 3 + ky) * 3 + kx])
                  * Double(input[((b * cin + ci) * height + iy) * width + ix])
              }
            }
          }
          let o = ((b * cout + co) * height + y) * width + x
          output[o] = relu ? max(sum, 0) : sum
          let g = relu && sum <= 0 ? 0 : Double(outputGrad[o])
          dBias[co] += g
          for ci in 0..<cin {
            for ky in 0..<3 {
              for kx in 0..<3 {
                let (iy, ix) = (y + ky - 1, x + kx - 1)
                if iy < 0 || iy >= height || ix < 0 || ix >= width { continue }
                let wi = ((co * cin + ci) * 3 + ky) * 3 + kx
                let xi = ((b * cin + ci) * height + iy) * width + ix
                dWeight[wi] += g * Double(input[xi])
                dInput[xi] += g * Double(weight[wi])
              }
            }
          }
        }
      }
    }
  }
  return (output, dInput, dWeight, dBias)
}

/// The reference convolution's output alone, as a Float tensor [B, Cout, H, W].
func referenceConvolution(input: Tensor, weight: Tensor, bias: Tensor, relu: Bool) -> Tensor {
  let shape = [input.shape[0], weight.shape[0], input.shape[2], input.shape[3]]
  let output = referenceConvolution(
    input: input, weight: weight, bias: bias, outputGrad: Tensor(zeros: shape), relu: relu
  ).output
  return Tensor(shape: shape, values: output.map { Float($0) })
}
