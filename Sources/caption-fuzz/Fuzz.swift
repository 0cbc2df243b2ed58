import Foundation
import HTTPTypes

@testable import CaptionKit

/// libFuzzer targets over everything that reads bytes it did not write: the safetensors header and
/// model file, the JSON reader, the dataset readers (Karpathy, COCO, Flickr8k, scenes), the caption
/// tokeniser, PNG and JPEG decoding through the C shims, and caption serve's request parsing.
///
/// Built only by `scripts/fuzz.sh` (CAPTION_FUZZ=1, `-sanitize=fuzzer,address`); the target is chosen
/// by `CAPTION_FUZZ_TARGET`. Beyond "no crash, no hang, no leak", each target checks what the
/// project promises of a refusal: it is a `CaptionError` (or the server's `ServeError`) whose message
/// is one printable line.
enum FuzzTarget: String, CaseIterable {
  case safetensors, json, dataset, scenes, tokenizer, png, jpeg, request
}

let target: FuzzTarget = {
  let name = ProcessInfo.processInfo.environment["CAPTION_FUZZ_TARGET"] ?? ""
  guard let target = FuzzTarget(rawValue: name) else {
    let known = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
    FileHandle.standardError.write(Data("set CAPTION_FUZZ_TARGET to one of: \(known)\n".utf8))
    exit(64)
  }
  return target
}()

/// A folder of this process's own for the readers that take a path (the model and dataset readers).
/// (Removed at exit by scripts/fuzz.sh, which gives each run its own TMPDIR.)
let scratch: String = {
  let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
  let folder = "\(base)/caption-fuzz-\(getpid())"
  try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
  return folder
}()

/// The input as a file in `scratch`, for the readers that open a path.
func file(_ bytes: [UInt8], named name: String) -> String {
  let path = scratch + "/" + name
  let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
  precondition(descriptor >= 0, "cannot write \(path)")
  precondition(bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) } == bytes.count)
  close(descriptor)
  return path
}

/// A refusal must be the library's own one-line error, never a raw system or decoder error.
func checkRefusal(_ error: Error) {
  guard let error = error as? CaptionError else {
    fatalError("a refusal that is not a CaptionError: \(type(of: error)): \(error)")
  }
  checkOneLine(error.description)
}

func checkOneLine(_ message: String) {
  precondition(
    !message.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F },
    "a message with a control character: \(message.debugDescription)")
  precondition(message.utf8.count <= 2000, "a message of \(message.utf8.count) bytes")
}

func refused(_ body: () throws -> Void) {
  do { try body() } catch { checkRefusal(error) }
}

/// libFuzzer's driver (its `main`, as a function): SwiftPM gives an executable its own entry point,
/// so the fuzzer is started from there.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
  _ argc: UnsafeMutablePointer<CInt>,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
  _ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@main
enum FuzzMain {
  static func main() {
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(runFuzzerDriver(&argc, &argv, fuzzOne))
  }
}

/// One input for the target chosen.
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data!, count: size))
  switch target {
  case .safetensors:
    refused { _ = try ModelFile.load(path: file(bytes, named: "model.safetensors")) }
  case .json:
    refused { _ = try JSONValue.parse(bytes, file: "fuzz.json") }
  case .dataset:
    refused {
      _ = try Dataset.loadOne(
        data: file(bytes, named: "captions"), images: nil, trainList: nil, valList: nil, testList: nil,
        wholeFileSplit: .train)
    }
  case .scenes:
    refused { _ = try Scenes.parse(Data(bytes), path: "scenes.json") }
  case .tokenizer:
    // The evaluation's tokeniser (SPEC §6) and training's, then the shapes caption parser.
    let text = String(decoding: bytes, as: UTF8.self)
    let tokens = PTBTokenizer.tokenize(text)
    precondition(tokens.allSatisfy { !$0.isEmpty }, "an empty token")
    _ = GroundedParser.parse(tokens)
    let image = DatasetImage(id: 0, path: "0.png", split: .train, captions: [text])
    let words = try! CaptionEncoding.tokenize([image])[0][0]  // no signal handler: never interrupted
    precondition(words.allSatisfy { !$0.isEmpty }, "an empty word")
  case .png, .jpeg:
    // The signature is kept, so that the mutations exercise the decoder rather than the sniffing.
    let signature: [UInt8] =
      target == .png ? [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] : [0xFF, 0xD8, 0xFF]
    let image = bytes.starts(with: signature) ? bytes : signature + bytes
    refused { _ = try ImageDecoder(maxPixels: 4_000_000).decode(bytes: image, path: "fuzz") }
  case .request:
    // Line 1 the query string, line 2 the Content-Type (empty: none), the rest the body.
    let lines = bytes.split(separator: 0x0A, maxSplits: 2, omittingEmptySubsequences: false)
    let query = String(decoding: lines[0], as: UTF8.self)
    let contentType = lines.count > 1 && !lines[1].isEmpty ? String(decoding: lines[1], as: UTF8.self) : nil
    let body = lines.count > 2 ? Array(lines[2]) : []
    do {
      _ = try CaptionRequest.options(query: CaptionRequest.queryPairs(query))
      _ = try CaptionRequest.image(body: body, contentType: contentType)
    } catch let error as ServeError {
      precondition(error.status.code >= 400 && error.status.code < 500, "status \(error.status.code)")
    } catch {
      fatalError("a refusal that is not a ServeError: \(error)")
    }
  }
  return 0
}
