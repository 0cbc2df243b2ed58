import Foundation
import XCTest

@testable import CaptionKit

/// The library's folders are floors: each folder's code names only what its own folder or the floors
/// below it declare (C kernels and shims are floor 0, the command line sits above everything).
///
///     1 Core                      Tensor, GEMM, Parallel, RNG, initialisation, errors, atomic files
///     2 Formats, Image, Layers    JSON and safetensors, image input, the layers
///     3 Data                      datasets, tokenizer, vocabulary, batch loader
///     4 Model                     config, encoder, caption model, model file, objective terms' interface
///     5 Decoding, Metrics, Shapes greedy/beam/sampling, COCO metrics, the shapes data and its terms
///     6 Training, Inference       the training run, describe
///     7 Evaluation, Bench         evaluate (runs inference), bench (runs training steps)
///
/// The check reads the sources: the top-level types, functions and constants each folder declares,
/// and every identifier the other folders use (comments and string literals left out).
final class ArchitectureTests: XCTestCase {
  static let floors: [String: Int] = [
    "Core": 1, "Formats": 2, "Image": 2, "Layers": 2, "Data": 3, "Model": 4, "Decoding": 5, "Metrics": 5,
    "Shapes": 5, "Training": 6, "Inference": 6, "Evaluation": 7, "Bench": 7,
  ]

  func testFoldersOnlyUseTheFloorsBelowThem() throws {
    let library = packageRoot + "/Sources/CaptionKit"
    let sources = try swiftFiles(under: library)
    XCTAssertGreaterThan(sources.count, 50, "too few sources found under \(library)")
    var declaredIn: [String: String] = [:]  // name → folder
    var identifiersOf: [String: Set<String>] = [:]  // folder → identifiers used
    for path in sources {
      let relative = String(path.dropFirst(library.count + 1))
      guard let folder = relative.split(separator: "/").first.map(String.init), relative.contains("/")
      else {
        XCTFail("\(relative): a source outside every floor's folder")
        continue
      }
      guard Self.floors[folder] != nil else {
        XCTFail("\(folder)/ has no floor: add it to ArchitectureTests.floors and the README's layout")
        continue
      }
      let code = Self.withoutCommentsAndStrings(try String(contentsOfFile: path, encoding: .utf8))
      for name in Self.topLevelDeclarations(code) {
        if let other = declaredIn[name], other != folder {
          XCTFail("\(name) is declared in both \(other)/ and \(folder)/")
        }
        declaredIn[name] = folder
      }
      identifiersOf[folder, default: []].formUnion(Self.identifiers(code))
    }
    XCTAssertNotNil(declaredIn["CaptionModel"], "the declaration scan found no CaptionModel")
    var upward: [String] = []
    for (folder, used) in identifiersOf {
      for name in used {
        guard let owner = declaredIn[name], owner != folder else { continue }
        if Self.floors[owner]! >= Self.floors[folder]! {
          upward.append("\(folder)/ uses \(name) of \(owner)/")
        }
      }
    }
    XCTAssertEqual(upward.sorted(), [], "folders that reach up or sideways")
  }

  /// The check itself catches an upward use.
  func testTheCheckSeesAnUpwardUse() {
    let layer = Self.withoutCommentsAndStrings(
      "// CaptionModel in a comment\nlet x = \"CaptionModel\"\nfinal class Conv { var m: CaptionModel? }\n")
    XCTAssertEqual(Self.topLevelDeclarations(layer), ["x", "Conv"])
    XCTAssertTrue(Self.identifiers(layer).contains("CaptionModel"))
    XCTAssertEqual(
      Self.identifiers(Self.withoutCommentsAndStrings("/* Tensor */ let s = \"Tensor \\(1)\"")),
      ["let", "s"])
  }

  /// The library knows nothing of the command line.
  func testTheLibraryDoesNotImportTheCommandLine() throws {
    for path in try swiftFiles(under: packageRoot + "/Sources/CaptionKit") {
      let text = try String(contentsOfFile: path, encoding: .utf8)
      XCTAssertFalse(text.contains("import ArgumentParser"), path)
    }
  }

  private func swiftFiles(under root: String) throws -> [String] {
    guard let walker = FileManager.default.enumerator(atPath: root) else {
      throw CaptionError(.unreadable, path: root, "the sources folder is missing")
    }
    return walker.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }.map { root + "/" + $0 }
      .sorted()
  }

  /// Types, protocols, type aliases, functions, constants and variables declared at column 0.
  static func topLevelDeclarations(_ code: String) -> [String] {
    let pattern =
      #"(?m)^(?:@[A-Za-z]+(?:\([^)]*\))?\s+)*(?:(?:public|internal|package|fileprivate|private|final|indirect)\s+)*"#
      + #"(?:struct|class|enum|protocol|typealias|actor|func|let|var)\s+([A-Za-z_][A-Za-z0-9_]*)"#
    let regex = try! NSRegularExpression(pattern: pattern)
    let range = NSRange(code.startIndex..., in: code)
    return regex.matches(in: code, range: range).map { String(code[Range($0.range(at: 1), in: code)!]) }
  }

  /// The library and `caption` import FoundationEssentials, never Foundation proper: linked into
  /// the executable, Foundation doubled its size and slowed the start of every command
  /// (Package.swift says why).
  func testTheLibraryAndTheCommandLineDoNotImportFoundation() throws {
    var checked = 0
    for folder in ["/Sources/CaptionKit", "/Sources/caption"] {
      for path in try swiftFiles(under: packageRoot + folder) {
        let code = try String(contentsOfFile: path, encoding: .utf8)
        for line in code.split(separator: "\n") where line.hasPrefix("import ") || line.contains(" import ") {
          let module = line.split(separator: " ").last.map(String.init) ?? ""
          XCTAssertNotEqual(module, "Foundation", "\(path): \(line)")
        }
        checked += 1
      }
    }
    XCTAssertGreaterThan(checked, 60)
  }

  static func identifiers(_ code: String) -> Set<String> {
    // A name the standard library's module qualifies (`Swift.Encoder`) is its, not the library's.
    let regex = try! NSRegularExpression(pattern: #"(\bSwift\.)?[A-Za-z_][A-Za-z0-9_]*"#)
    let range = NSRange(code.startIndex..., in: code)
    let names = regex.matches(in: code, range: range).map { String(code[Range($0.range, in: code)!]) }
    return Set(names.filter { !$0.hasPrefix("Swift.") })
  }

  /// The code with `//` and `/* */` comments and string literals blanked out.
  static func withoutCommentsAndStrings(_ code: String) -> String {
    var out = ""
    var chars = Array(code)[...]
    while let c = chars.first {
      if c == "/" && chars.dropFirst().first == "/" {
        while let d = chars.first, d != "\n" { chars = chars.dropFirst() }
      } else if c == "/" && chars.dropFirst().first == "*" {
        chars = chars.dropFirst(2)
        while !chars.isEmpty && !(chars.first == "*" && chars.dropFirst().first == "/") {
          chars = chars.dropFirst()
        }
        chars = chars.dropFirst(2)
        out.append(" ")
      } else if c == "\"" {
        // A string literal (also `"""` and `#"…"#`): skip to its closing quote, honouring escapes.
        let triple = chars.starts(with: ["\"", "\"", "\""])
        chars = chars.dropFirst(triple ? 3 : 1)
        while let d = chars.first {
          if d == "\\" {
            chars = chars.dropFirst(2)
          } else if triple ? chars.starts(with: ["\"", "\"", "\""]) : d == "\"" {
            chars = chars.dropFirst(triple ? 3 : 1)
            break
          } else {
            chars = chars.dropFirst()
          }
        }
        out.append(" ")
      } else {
        out.append(c)
        chars = chars.dropFirst()
      }
    }
    return out
  }
}
