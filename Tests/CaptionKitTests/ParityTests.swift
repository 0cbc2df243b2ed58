import XCTest

@testable import CaptionKit

/// Parity with PyTorch, as llm.c tests against a PyTorch dump: `scripts/make_parity_fixture.py`
/// builds the SPEC §3 network in PyTorch (`scripts/torch_reference.py`), writes a tiny random model
/// in our file format, a fixed batch, and the float64 forward/backward rounded to float32.
/// Bound: relative L2 error ‖ours − torch‖ / ‖torch‖ below 1e-4 for v, logits and the loss, and
/// below 1e-3 for every gradient (float32 accumulation over a few hundred terms).
final class ParityTests: XCTestCase {
  func testEveryCellMatchesPyTorch() throws {
    for name in ["lstm", "gru", "rnn", "peephole", "coupled", "lstm2_first_flatten"] {
      try checkFixture(name)
    }
  }

  func checkFixture(_ name: String) throws {
    let modelPath = fixturePath("parity/\(name).model.safetensors")
    let file = try ModelFile.load(path: modelPath)
    let expected = try Safetensors.read(path: fixturePath("parity/\(name).expected.safetensors")).tensors
    let model = CaptionModel(config: file.config)
    try model.adopt(tensors: file.tensors, path: modelPath)

    let images = expected["batch.images"]!  // [B, 3, S, S]
    let inputs = expected["batch.inputs"]!  // [B, T]
    let targets = expected["batch.targets"]!
    let (batch, steps) = (inputs.shape[0], inputs.shape[1])
    // Our decoder batches are time-major: index t·B + b.
    var inputTokens = [Int](repeating: 0, count: steps * batch)
    var targetTokens = [Int](repeating: 0, count: steps * batch)
    for b in 0..<batch {
      for t in 0..<steps {
        inputTokens[t * batch + b] = Int(inputs[b * steps + t])
        targetTokens[t * batch + b] = Int(targets[b * steps + t])
      }
    }
    var generator = SeededGenerator(seed: 1)
    zeroGradients(model.parameters)
    let loss = model.forward(
      images: images, captionsPerImage: 1, steps: steps, inputTokens: inputTokens,
      targetTokens: targetTokens, training: false, generator: &generator)
    let imageGrad = model.backward(imageGrad: true)!

    let expectedLoss = expected["expected.loss"]![0]
    XCTAssertEqual(loss, expectedLoss, accuracy: 1e-4 * abs(expectedLoss), "\(name): loss")

    let vocab = file.config.vocabSize
    let logits = model.lastLogits!
    var batchMajor = [Float](repeating: 0, count: logits.count)
    for t in 0..<steps {
      for b in 0..<batch {
        for j in 0..<vocab { batchMajor[(b * steps + t) * vocab + j] = logits[(t * batch + b) * vocab + j] }
      }
    }
    assertClose(batchMajor, expected["expected.logits"]!.array, bound: 1e-4, "\(name): logits")
    assertClose(model.encode(images).array, expected["expected.v"]!.array, bound: 1e-4, "\(name): v")
    assertClose(imageGrad.array, expected["grad.images"]!.array, bound: 1e-3, "\(name): grad.images")
    for (tensorName, parameter) in model.namedParameters {
      guard let reference = expected["grad." + tensorName] else {
        XCTFail("\(name): the fixture has no grad.\(tensorName)")
        continue
      }
      assertClose(parameter.grad.array, reference.array, bound: 1e-3, "\(name): grad.\(tensorName)")
    }
  }

  func assertClose(
    _ ours: [Float], _ reference: [Float], bound: Double, _ what: String,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(ours.count, reference.count, what, file: file, line: line)
    var difference = 0.0
    var norm = 0.0
    for (a, b) in zip(ours, reference) {
      difference += Double(a - b) * Double(a - b)
      norm += Double(b) * Double(b)
    }
    let relative = difference.squareRoot() / max(norm.squareRoot(), 1e-12)
    XCTAssertLessThan(relative, bound, "\(what): relative L2 error \(relative)", file: file, line: line)
  }
}
