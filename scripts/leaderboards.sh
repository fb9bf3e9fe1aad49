#!/usr/bin/env bash
# Regenerate the committed leaderboards from the result files under leaderboard/:
#   leaderboard/demo.md, demo.html     the offline demo (leaderboard/demo-runs), tested against none
#   leaderboard/<experiment>/results.md  every experiment folder with a runs/ folder (an
#                                      experiment whose run.sh has a `results` step renders its
#                                      own table: its baseline and reference columns)
#   leaderboard/README.md              everything under leaderboard/, found recursively, so a new
#                                      experiment's runs/ appear without touching this script
#   docs/leaderboard-demo.png          a screenshot of demo.html (when chromium is installed)
set -euo pipefail
cd "$(dirname "$0")/.."
LAMP=${LAMP:-.venv/bin/lamp}
SIG=(--baseline none --correction holm --seed 0)

"$LAMP" leaderboard leaderboard/demo-runs "${SIG[@]}" --out leaderboard/demo.md > /dev/null
"$LAMP" leaderboard leaderboard/demo-runs "${SIG[@]}" --ci --by profile-size --summary \
  --format html --out leaderboard/demo.html
for runs in leaderboard/*/runs; do
  [ -d "$runs" ] || continue
  experiment=$(dirname "$runs")
  if grep -qs '^ *results)' "$experiment/run.sh"; then
    PATH="$(cd "$(dirname "$LAMP")" && pwd):$PATH" OUT="$runs" RESULTS="$experiment/results.md" \
      bash "$experiment/run.sh" results > /dev/null
  else
    "$LAMP" leaderboard "$runs" "${SIG[@]}" --ci --by profile-size --out "$experiment/results.md" > /dev/null
  fi
done
"$LAMP" leaderboard leaderboard "${SIG[@]}" --ci --summary --out leaderboard/README.md > /dev/null

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CHROMIUM" ]; then
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,960 \
    --screenshot=docs/leaderboard-demo.png "file://$PWD/leaderboard/demo.html" 2>/dev/null
  echo "wrote docs/leaderboard-demo.png"
fi
