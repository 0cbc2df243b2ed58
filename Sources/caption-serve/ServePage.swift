/// `GET /`: one self-contained page (no external assets) where a person drops or picks an image and
/// reads its caption, captioned through `POST /v1/captions`; on a server with an image index, also a
/// search box whose results (paths and scores, through `GET /v1/search`) are listed as text.
enum ServePage {
  static func html(search: Bool) -> String {
    search ? page.replacingOccurrences(of: "<!-- search -->", with: searchPart) : page
  }

  private static let page = """
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>caption</title>
    <style>
      body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem;
             color: #222; background: #fafafa; }
      h1 { font-size: 1.4rem; }
      #drop { border: 2px dashed #888; border-radius: 8px; padding: 2rem; text-align: center;
              background: #fff; cursor: pointer; }
      #drop.over { border-color: #06c; background: #eef5ff; }
      #preview { display: block; width: 12rem; max-width: 100%; height: auto; margin: 1rem auto;
                 image-rendering: pixelated; }
      #caption { font-size: 1.3rem; min-height: 1.6em; }
      #details { color: #666; font-size: 0.9rem; }
      .error { color: #b00; }
      label { margin-right: 1rem; }
      #query { width: 70%; }
      #results { font-family: ui-monospace, monospace; font-size: 0.9rem; }
    </style>
    </head>
    <body>
    <h1>caption</h1>
    <div id="drop">Drop an image here, or <label for="file"><u>pick one</u></label>
      <input id="file" type="file" accept="image/jpeg,image/png" hidden>
    </div>
    <p>
      <label>beam <select id="beam"><option>1</option><option selected>3</option><option>5</option></select></label>
      <label><input id="sample" type="checkbox"> sample</label>
    </p>
    <img id="preview" alt="" hidden>
    <p id="caption" aria-live="polite"></p>
    <p id="details"></p>
    <!-- search -->
    <script>
    const drop = document.getElementById("drop");
    const input = document.getElementById("file");
    const preview = document.getElementById("preview");
    const captionLine = document.getElementById("caption");
    const details = document.getElementById("details");

    async function describe(file) {
      preview.src = URL.createObjectURL(file);
      preview.hidden = false;
      captionLine.className = "";
      captionLine.textContent = "…";
      details.textContent = "";
      const query = new URLSearchParams({ beam: document.getElementById("beam").value });
      if (document.getElementById("sample").checked) query.set("sample", "true");
      try {
        const response = await fetch("/v1/captions?" + query, {
          method: "POST",
          headers: { "Content-Type": file.type || "application/octet-stream" },
          body: file,
        });
        const answer = await response.json();
        if (!response.ok) throw new Error(answer.error || response.statusText);
        captionLine.textContent = answer.caption;
        details.textContent = "log-probability " + answer.logprob.toFixed(3);
      } catch (error) {
        captionLine.className = "error";
        captionLine.textContent = error.message;
      }
    }

    drop.addEventListener("click", () => input.click());
    input.addEventListener("change", () => { if (input.files[0]) describe(input.files[0]); });
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      if (event.dataTransfer.files[0]) describe(event.dataTransfer.files[0]);
    });
    </script>
    </body>
    </html>
    """

  /// The search box and its script, put in place of the page's `<!-- search -->`.
  private static let searchPart = """
    <h2>search the images</h2>
    <form id="search"><input id="query" type="search" placeholder="two red circles left of a blue star">
      <button type="submit">search</button></form>
    <ol id="results"></ol>
    <p id="search-error" class="error"></p>
    <script>
    document.getElementById("search").addEventListener("submit", async (event) => {
      event.preventDefault();
      const results = document.getElementById("results");
      const failure = document.getElementById("search-error");
      results.replaceChildren();
      failure.textContent = "";
      const query = new URLSearchParams({ q: document.getElementById("query").value, top: "10" });
      try {
        const response = await fetch("/v1/search?" + query);
        const answer = await response.json();
        if (!response.ok) throw new Error(answer.error || response.statusText);
        for (const result of answer.results) {
          const item = document.createElement("li");
          item.textContent = result.score.toFixed(4) + " " + result.image;
          results.appendChild(item);
        }
      } catch (error) {
        failure.textContent = error.message;
      }
    });
    </script>
    """
}
