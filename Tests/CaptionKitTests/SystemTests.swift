import Foundation
import XCTest

@testable import CaptionKit

/// The library's own stand-ins for what Foundation proper did (Core/System.swift, JSONText's
/// trees), each against Foundation itself, which the tests may link.
final class SystemTests: XCTestCase {
  func testCFormatAgreesWithFoundationsFormat() {
    let cases: [(String, [CVarArg])] = [
      ("%.4f", [0.123456]), ("%.2f", [-3.14159]), ("%9.2f ms", [12.345]),
      ("%9.2f ms  %5.1f%%", [1.5, 99.44]),
      ("%.1f GB", [1e12 / 1e9]), ("%.0f", [2.5]), ("%.2e", [0.000123]), ("%ld:%02ld:%02ld", [3, 7, 9]),
      ("%03ld", [7]), ("epoch %ld/%ld step %ld", [1, 2, 12_345_678_901]), ("%.1f,%.1f", [1.25, -0.05]),
      ("%6.1f GFLOP/s %3.0f%% of peak", [81.25, 70.4]), ("%.3f", [Double.nan]), ("%.3f", [Double.infinity]),
    ]
    for (format, arguments) in cases {
      XCTAssertEqual(callCFormat(format, arguments), String(format: format, arguments: arguments), format)
    }
    // longer than the first buffer
    XCTAssertEqual(String(cFormat: "%300.2f|", 1.5), String(format: "%300.2f|", 1.5))
    XCTAssertEqual(String(cFormat: "%300.2f|", 1.5).count, 301)
  }

  private func callCFormat(_ format: String, _ arguments: [CVarArg]) -> String {
    switch arguments.count {
    case 1: return String(cFormat: format, arguments[0])
    case 2: return String(cFormat: format, arguments[0], arguments[1])
    default: return String(cFormat: format, arguments[0], arguments[1], arguments[2])
    }
  }

  func testParentFolderAgreesWithNSString() {
    for path in ["a/b/c", "a/b/", "ab", "/a", "/", "/a/b", "a//b", "./x", "../x/y", "", "//a", "a/b//"] {
      XCTAssertEqual(parentFolder(of: path), (path as NSString).deletingLastPathComponent, "\(path)")
    }
    // Foundation's stops the process on a one-character name (Swift 6.3 on Linux)
    XCTAssertEqual(parentFolder(of: "a"), "")
    XCTAssertEqual(parentFolder(of: "x/a"), "x")
  }

  func testTrimmingAndPadding() {
    XCTAssertEqual(" \t 12 \n".trimmingWhitespace(), "12")
    XCTAssertEqual("a b"[...].trimmingWhitespace(), "a b")
    XCTAssertEqual(" \n ".trimmingWhitespace(), "")
    XCTAssertEqual("ab".padded(to: 5), "ab   ")
    XCTAssertEqual("abcdef".padded(to: 3), "abcdef")
    XCTAssertEqual("ab".padded(to: 5), "ab".padding(toLength: 5, withPad: " ", startingAt: 0))
  }

  func testHTMLEscapingGoesScalarByScalar() {
    XCTAssertEqual(HTMLReport.escape(#"a<b>&"c""#), "a&lt;b&gt;&amp;&quot;c&quot;")
    // "<" and a combining acute accent are one Character, but a browser still sees a tag
    XCTAssertEqual(HTMLReport.escape("<\u{301}script>"), "&lt;\u{301}script&gt;")
  }

  func testSystemReasonNamesTheCause() {
    do {
      try FileManager.default.removeItem(atPath: temporaryFolder() + "/missing")
      XCTFail("removed a file that does not exist")
    } catch {
      XCTAssertEqual(systemReason(error), "No such file or directory")
    }
  }

  func testJSONTextAgreesWithJSONSerializationBesideKeyOrder() throws {
    let tree: [String: Any] = [
      "a": 14.0, "b": 0.1, "c": 1e-7, "d": 1e21, "f": 3, "g": "x/y\"\u{1}é\n\t",
      "h": [1, 2.5, true] as [Any],
      "i": ["z": 1, "y": [String: Any]()] as [String: Any], "j": 123_456_789_012.0, "k": -0.0,
      "m": 12345678.9,
      "n": Double.leastNonzeroMagnitude, "o": [Any](),
    ]
    for slashes in [false, true] {
      let ours = try JSONText.encode(tree, escapingSlashes: slashes)
      let options: JSONSerialization.WritingOptions =
        slashes ? [.sortedKeys] : [.sortedKeys, .withoutEscapingSlashes]
      let theirs = String(
        decoding: try JSONSerialization.data(withJSONObject: tree, options: options), as: UTF8.self)
      XCTAssertEqual(ours, theirs)  // these keys sort alike both ways
    }
    // Keys by code point: upper case before lower case.
    XCTAssertEqual(
      try JSONText.encode(["b": 1, "B": 2, "a10": 3, "a9": 4]), #"{"B":2,"a10":3,"a9":4,"b":1}"#)
    // A Float by its shortest decimal; integers past Int.max exactly; nothing for NaN.
    XCTAssertEqual(try JSONText.encode(["x": Float(0.485)]), #"{"x":0.485}"#)
    XCTAssertEqual(try JSONText.encode(["seed": UInt64.max]), #"{"seed":18446744073709551615}"#)
    XCTAssertThrowsError(try JSONText.encode(["loss": Double.nan]))
    XCTAssertThrowsError(try JSONText.encode(["when": Date()]))
    // Parsed JSON goes through unchanged, pretty printed as JSONSerialization did.
    let parsed = try XCTUnwrap(JSONText.parse(#"{"step":3,"data":"a/b","metrics":{"BLEU-4":0.25}}"#))
    XCTAssertEqual(
      try JSONText.encode(parsed, pretty: true),
      """
      {
        "data" : "a/b",
        "metrics" : {
          "BLEU-4" : 0.25
        },
        "step" : 3
      }
      """)
    XCTAssertTrue(JSONText.isJSON("\"text\""))
    XCTAssertTrue(JSONText.isJSON("[1, {\"a\": null}]"))
    XCTAssertFalse(JSONText.isJSON("{\"a\": }"))
    XCTAssertFalse(JSONText.isJSON("caption train"))
  }

  func testLockConditionAndThreads() {
    let lock = Lock()
    let condition = Condition()
    var total = 0
    var finished = 0
    let threads = 4
    for _ in 0..<threads {
      startThread(stackSize: 1 << 20) {
        for _ in 0..<10_000 { lock.withLock { total += 1 } }
        condition.lock()
        finished += 1
        condition.signal()
        condition.unlock()
      }
    }
    condition.lock()
    while finished < threads { condition.wait() }
    condition.unlock()
    XCTAssertEqual(lock.withLock { total }, threads * 10_000)
  }
}
