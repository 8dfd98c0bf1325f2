#!/bin/sh
# Renders the sample report in headless Chromium and checks that the page
# loads, shows its headline elements and logs no console errors.
#
# Usage: report_html_chromium_test.sh <path to write_sample_report>
# Exits 77 (ctest SKIP_RETURN_CODE) when no Chromium is installed.
set -u

writer="${1:?usage: $0 <write_sample_report>}"

browser=""
for candidate in chromium chromium-browser google-chrome; do
  if command -v "$candidate" >/dev/null 2>&1; then
    browser="$candidate"
    break
  fi
done
if [ -z "$browser" ]; then
  echo "SKIP: no chromium found on PATH"
  exit 77
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/report_html_chromium_test.XXXXXX")"
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

"$writer" --out_dir="$work/out" >/dev/null || {
  echo "FAIL: write_sample_report exited $?"
  exit 1
}
page="file://$work/out/report.html"

# A private profile so that concurrent Chromium instances do not collide.
run_browser() {
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu \
    --no-first-run --user-data-dir="$work/profile" \
    --enable-logging=stderr --v=0 "$@"
}

run_browser --dump-dom "$page" >"$work/dom.html" 2>"$work/dom.log"
rc=$?
[ "$rc" -eq 0 ] || fail "chromium --dump-dom exited $rc"

run_browser --hide-scrollbars --window-size=1280,2400 \
  --screenshot="$work/screenshot.png" "$page" \
  >"$work/shot.out" 2>"$work/shot.log"
rc=$?
[ "$rc" -eq 0 ] || fail "chromium --screenshot exited $rc"
if [ ! -s "$work/screenshot.png" ] ||
  [ "$(wc -c <"$work/screenshot.png")" -lt 20000 ]; then
  fail "screenshot missing or nearly empty"
fi

# The page is static: any console message means something went wrong.
if grep -E 'Uncaught|ERROR:CONSOLE|:CONSOLE[:(]' "$work/dom.log" \
  "$work/shot.log"; then
  fail "console messages in the Chromium log (above)"
fi

dom="$work/dom.html"
expect() {
  grep -qF -- "$1" "$dom" || fail "DOM lacks: $1"
}
expect '<h1>FreeMatch + SimCLR + margin sampling &lt;demo&gt; &amp; "quotes"</h1>'
expect 'id="headline-accuracy"'
expect '<div class="value">86.3%</div>'
expect 'id="headline-labels"'
expect '<div class="value">200 / 250</div>'
expect 'id="headline-device"'
expect 'cuda:0 (NVIDIA H100 80GB HBM3)'
expect 'id="headline-speed"'
expect 'id="headline-wall-time"'
expect 'Objective: <b>freematch</b>'
expect 'Initial weights: <span class="path">/var/cache/fewlabels/pretrain/'
expect 'id="pretraining"'
expect 'Pretraining loss vs step'
expect 'trained in this run'
expect 'id="feature-quality"'
expect '<td class="better">+12.9 pp</td>'
expect 'id="learning-curves"'
expect '<polyline class="curve"'
expect 'id="confusion"'
expect 'id="per-class"'
expect 'id="queried"'
expect 'Queried samples (200)'
expect 'id="config"'
expect '&lt;script&gt;alert('
for name in 'T-shirt/top' Trouser Pullover Dress Coat Sandal Shirt Sneaker \
  Bag 'Ankle boot'; do
  expect "<th class=\"row\">$name</th>"
done
images=$(grep -o '<img ' "$dom" | wc -l)
[ "$images" -eq 200 ] || fail "expected 200 <img> elements, found $images"
pngs=$(grep -o 'src="data:image/png;base64,' "$dom" | wc -l)
[ "$pngs" -eq 200 ] || fail "expected 200 PNG data URIs, found $pngs"
if grep -q '<script' "$dom"; then
  fail "the page has a <script> element (the escaped config leaked?)"
fi

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed; outputs kept in $work"
  exit 1
fi
rm -rf "$work"
echo "PASS: report.html renders in $browser"
exit 0
