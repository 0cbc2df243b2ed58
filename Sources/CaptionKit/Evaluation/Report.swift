import FoundationEssentials
import Glibc

/// `caption evaluate --report report.html`: one self-contained page (thumbnails embedded) with the
/// summary metrics and training curves at the top, then a gallery sortable by CIDEr-D.
public enum HTMLReport {
  public static func write(
    _ result: EvaluationResult, modelPath: String, dataPath: String, split: String,
    trainingLogPath: String?, to path: String, thumbnailSize: Int = 128
  ) throws {
    var html = """
      <!doctype html>
      <html lang="en"><head><meta charset="utf-8"><title>caption evaluation: \(escape(split))</title>
      <style>
      body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
      h1 { font-size: 20px; } table.metrics td, table.metrics th { padding: 4px 12px; text-align: right; }
      table.metrics th { text-align: left; } .gallery { display: flex; flex-wrap: wrap; gap: 12px; }
      .card { width: 300px; border: 1px solid #ddd; border-radius: 6px; padding: 8px; display: flex; gap: 8px; }
      .card img { width: \(thumbnailSize)px; height: \(thumbnailSize)px; image-rendering: pixelated; flex: none; }
      .caption { font-weight: 600; } .wrong { color: #c00; text-decoration: underline wavy; }
      .refs { color: #666; font-size: 12px; margin: 4px 0 0 0; padding-left: 16px; }
      .score { font-size: 12px; color: #444; } .curves svg { border: 1px solid #eee; margin-right: 16px; }
      </style></head><body>
      <h1>caption evaluation</h1>
      <p>model <code>\(escape(modelPath))</code>, data <code>\(escape(dataPath))</code>, split <b>\(escape(split))</b>,
      \(result.images.count) images\(result.skipped.isEmpty ? "" : ", \(result.skipped.count) skipped")</p>
      <table class="metrics"><tr>
      """
    let metrics = result.jsonObject().sorted { order($0.key) < order($1.key) }
    html += metrics.map { "<th>\(escape($0.key))</th>" }.joined() + "</tr><tr>"
    html += metrics.map { String(cFormat: "<td>%.4f</td>", $0.value) }.joined() + "</tr></table>\n"
    if let trainingLogPath, let curves = curvesSVG(logPath: trainingLogPath) {
      html += "<h2>Training</h2><div class=\"curves\">\(curves)</div>\n"
    }
    html += """
      <h2>Gallery</h2>
      <p>Sort: <select id="sort" onchange="sortCards()"><option value="asc">worst CIDEr-D first</option>
      <option value="desc">best CIDEr-D first</option><option value="id">image id</option></select>
      Words the scene contradicts are <span class="wrong">marked</span>.</p>
      <div class="gallery" id="gallery">

      """
    for item in result.images {
      let thumbnail =
        (try? Preprocess.load(path: item.image.path, size: thumbnailSize))
        .flatMap { try? PNGWriter.encode($0) }
        .map { "data:image/png;base64," + Data($0).base64EncodedString() } ?? ""
      let words = item.tokens.enumerated().map { index, word in
        item.wrongWords.contains(index) ? "<span class=\"wrong\">\(escape(word))</span>" : escape(word)
      }.joined(separator: " ")
      let references = item.image.captions.map { "<li>\(escape($0))</li>" }.joined()
      html += """
        <div class="card" data-cider="\(item.ciderD)" data-id="\(item.image.id)"><img src="\(thumbnail)" alt="">
        <div><div class="caption">\(words)</div>
        <div class="score">CIDEr-D \(String(cFormat: "%.3f", item.ciderD)) · id \(item.image.id)</div>
        <ul class="refs">\(references)</ul></div></div>

        """
    }
    html += """
      </div>
      <script>
      function sortCards() {
        const how = document.getElementById('sort').value;
        const gallery = document.getElementById('gallery');
        const cards = Array.from(gallery.children);
        cards.sort((a, b) => how === 'id' ? a.dataset.id - b.dataset.id
          : (how === 'asc' ? 1 : -1) * (a.dataset.cider - b.dataset.cider));
        cards.forEach(c => gallery.appendChild(c));
      }
      sortCards();
      </script>
      </body></html>

      """
    try AtomicFile.write(Data(html.utf8), to: path)
  }

  private static func order(_ key: String) -> Int {
    [
      "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D", "object-F1", "attribute-accuracy",
      "count-accuracy", "relation-accuracy",
    ].firstIndex(of: key) ?? 99
  }

  /// The text with HTML's special characters escaped, scalar by scalar (an `<` followed by a
  /// combining mark is one Character, and still a tag's start to a browser).
  static func escape(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
      switch scalar {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out
  }

  /// Two small SVG plots from the training log (SPEC §8): loss and validation CIDEr-D against step.
  static func curvesSVG(logPath: String) -> String? {
    guard let bytes = try? RegularFile.read(logPath, maximumBytes: 1 << 30, what: "a training log") else {
      return nil
    }
    let text = String(decoding: bytes, as: UTF8.self)
    var loss: [(Double, Double)] = []
    var cider: [(Double, Double)] = []
    for line in text.split(separator: "\n") {
      guard case .object(let object)? = try? JSONValue.parse(Array(line.utf8), file: logPath),
        let step = object["step"]?.doubleValue
      else { continue }
      if let value = object["loss"]?.doubleValue { loss.append((step, value)) }
      if let value = object["val_CIDEr-D"]?.doubleValue { cider.append((step, value)) }
    }
    guard !loss.isEmpty else { return nil }
    return plot(loss, title: "training loss", color: "#1f77b4")
      + (cider.isEmpty ? "" : plot(cider, title: "validation CIDEr-D", color: "#d62728"))
  }

  static func plot(_ points: [(Double, Double)], title: String, color: String) -> String {
    let (width, height, margin) = (360.0, 200.0, 36.0)
    let xs = points.map(\.0)
    let ys = points.map(\.1)
    let (x0, x1) = (xs.min()!, max(xs.max()!, xs.min()! + 1))
    let (y0, y1) = (min(ys.min()!, 0), max(ys.max()!, ys.min()! + 1e-9))
    func px(_ x: Double) -> Double { margin + (x - x0) / (x1 - x0) * (width - 2 * margin) }
    func py(_ y: Double) -> Double { height - margin - (y - y0) / (y1 - y0) * (height - 2 * margin) }
    let line = points.map { String(cFormat: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ")
    return """
      <svg width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" xmlns="http://www.w3.org/2000/svg">
      <text x="\(margin)" y="16" font-size="12">\(title)</text>
      <line x1="\(margin)" y1="\(height - margin)" x2="\(width - margin)" y2="\(height - margin)" stroke="#999"/>
      <line x1="\(margin)" y1="\(margin)" x2="\(margin)" y2="\(height - margin)" stroke="#999"/>
      <text x="2" y="\(py(y1) + 4)" font-size="10">\(String(cFormat: "%.2f", y1))</text>
      <text x="2" y="\(py(y0))" font-size="10">\(String(cFormat: "%.2f", y0))</text>
      <text x="\(width - margin - 40)" y="\(height - margin + 14)" font-size="10">step \(Int(x1))</text>
      <polyline fill="none" stroke="\(color)" stroke-width="1.5" points="\(line)"/>
      </svg>
      """
  }
}
