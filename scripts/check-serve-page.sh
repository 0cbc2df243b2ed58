#!/usr/bin/env bash
# The page at GET / in a real browser: starts caption-serve on a free loopback port (with an index of
# the bundled examples), opens the page in headless Chromium (through chromedriver and Selenium),
# picks an image in the file input, waits for the caption to appear in the page and checks it against
# `caption describe`; then types a query in the search box and checks the listed results against
# `caption search --index`; saves a screenshot.
#
#   scripts/check-serve-page.sh [IMAGE] [SCREENSHOT]     (defaults: a bundled example, /tmp/serve-page.png)
#
# Needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver); Selenium
# is installed from PyPI into .venv-page/ on first use. Not part of CI (the browser is ~300 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-datasets/shapes/examples/000001.png}
screenshot=${2:-/tmp/serve-page.png}

for tool in chromium chromedriver; do
  command -v "$tool" >/dev/null || { echo "check-serve-page: $tool is missing (apt-get install -y chromium chromium-driver)" >&2; exit 1; }
done
if [ ! -x .venv-page/bin/python ]; then
  python3 -m venv .venv-page
  .venv-page/bin/pip install -q selenium
fi
for product in caption caption-serve; do swift build -c release --product "$product" 2>&1 | tail -1 >&2; done

log=$(mktemp)
folder=$(mktemp -d)
index=$folder/examples.index
query="a black heart"
.build/release/caption index datasets/shapes/examples --out "$index" 2>/dev/null
.build/release/caption-serve --port 0 --index "$index" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; rm -rf "$log" "$folder"' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$log" | head -1)
[ -n "$url" ] || { echo "check-serve-page: the server did not start: $(cat "$log")" >&2; exit 1; }
expected=$(.build/release/caption describe "$image")
searched=$(.build/release/caption search --index "$index" "$query")

.venv-page/bin/python - "$url" "$(realpath "$image")" "$expected" "$screenshot" "$query" "$searched" <<'PY'
import sys
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, image, expected, screenshot, query, searched = sys.argv[1:7]
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=800,700"]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.set_page_load_timeout(20)
    driver.get(url + "/")
    driver.find_element(By.ID, "file").send_keys(image)
    caption = driver.find_element(By.ID, "caption")
    WebDriverWait(driver, 20).until(lambda d: caption.text not in ("", "…"))
    shown = caption.text
    driver.find_element(By.ID, "query").send_keys(query)
    driver.find_element(By.CSS_SELECTOR, "#search button").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results li"))
    listed = [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#results li")]
    driver.save_screenshot(screenshot)
finally:
    driver.quit()
print(f"page caption: {shown}")
print(f"describe:     {expected}")
print(f"page search:  {listed[0]} … ({len(listed)} results)")
print(f"screenshot:   {screenshot}")
if shown != expected:
    sys.exit("check-serve-page: the page's caption differs from describe's")
if listed != searched.splitlines():
    sys.exit(f"check-serve-page: the page's search results differ from caption search's:\n{listed}\n{searched}")
PY
