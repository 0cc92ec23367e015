#!/usr/bin/env bash
# Redraws the README's editor pictures (docs/images/editor-*.png) headlessly:
# VS Code's TextMate engine tokenizes docs/images/editor.fmflow (test/picture.js),
# Debian's chromium-headless-shell takes the screenshots. The diagnostic picture
# shows the same file with two mistakes, as `fmflow check` reports them.
# Run from vscode-extension/ after `npm ci`.
set -euo pipefail
cd "$(dirname "$0")/.."
images=../docs/images
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e 's/{{ question }}/{{ questoin }}/' -e 's/docs: docs)/docs: doc)/' "$images/editor.fmflow" > "$work/broken.fmflow"
(cd .. && python -m fmflow check --format json "$work/broken.fmflow" > "$work/diagnostics.json") || true
node test/picture.js "$images/editor.fmflow" > "$work/highlight.html"
node test/picture.js "$work/broken.fmflow" "$work/diagnostics.json" > "$work/diagnostic.html"
for name in highlight diagnostic; do
  chromium-headless-shell --no-sandbox --disable-gpu --hide-scrollbars --window-size=900,640 \
    --screenshot="$images/editor-$name.png" "file://$work/$name.html" 2>/dev/null >/dev/null
done
