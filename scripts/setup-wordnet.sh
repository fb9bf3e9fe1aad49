#!/usr/bin/env bash
# Install WordNet 3.0 for the METEOR metric (LongLaMP tasks), from Debian's wordnet-base and
# wordnet-sense-index packages, into a folder NLTK reads: DEST/corpora/wordnet/.
#   DEST = $1, or $LAMP_NLTK_DATA, or the project virtualenv's share/lamp-harness/nltk_data.
# NLTK 3.10 reads a corpus only from a real folder (copies, not symlinks) and also wants the
# 45-line `lexnames` table, which Debian ships only inside the lexnames(5WN) manual page: it is
# rebuilt from that page (file number, name, syntactic category 1 noun, 2 verb, 3 adj, 4 adv).
# Needs no root: the packages are fetched with `apt-get download` and unpacked with dpkg-deb.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-${LAMP_NLTK_DATA:-.venv/share/lamp-harness/nltk_data}}
TARGET="$DEST/corpora/wordnet"
if [ -s "$TARGET/lexnames" ] && [ -s "$TARGET/data.noun" ] && [ -s "$TARGET/index.sense" ]; then
  echo "WordNet 3.0 already in $TARGET"; exit 0
fi
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
fetch() { (cd "$WORK" && apt-get download -q wordnet-base wordnet-sense-index >/dev/null 2>&1); }
# As root, a machine whose package lists were never fetched gets them first.
fetch || { [ "$(id -u)" = 0 ] && apt-get update -q >/dev/null 2>&1 && fetch; } || {
  # No package download possible: an apt-installed copy will do.
  if [ -s /usr/share/wordnet/data.noun ]; then mkdir -p "$WORK/root/usr/share" && cp -r /usr/share/wordnet "$WORK/root/usr/share/";
    [ -f /usr/share/man/man5/lexnames.5WN.gz ] && mkdir -p "$WORK/root/usr/share/man/man5" && cp /usr/share/man/man5/lexnames.5WN.gz "$WORK/root/usr/share/man/man5/";
  else echo "cannot get Debian's wordnet-base and wordnet-sense-index (run: apt-get install wordnet-base wordnet-sense-index)" >&2; exit 1; fi; }
for deb in "$WORK"/*.deb; do [ -e "$deb" ] && dpkg-deb -x "$deb" "$WORK/root"; done
SRC="$WORK/root/usr/share/wordnet"
PART="$TARGET.part"; rm -rf "$PART"; mkdir -p "$PART"
cp -L "$SRC"/* "$PART"/
MAN="$WORK/root/usr/share/man/man5/lexnames.5WN.gz"
[ -f "$MAN" ] || { echo "the lexnames(5WN) page is missing from wordnet-base" >&2; exit 1; }
zcat "$MAN" | awk -F'\t' '$1 ~ /^[0-9][0-9]$/ {
  name=$2; gsub(/ /, "", name); split(name, p, ".");
  cat = (p[1]=="noun") ? 1 : (p[1]=="verb") ? 2 : (p[1]=="adj") ? 3 : 4;
  printf "%s\t%s\t%d\n", $1, name, cat }' > "$PART/lexnames"
[ "$(wc -l < "$PART/lexnames")" = 45 ] || { echo "lexnames table has $(wc -l < "$PART/lexnames") lines, expected 45" >&2; exit 1; }
rm -rf "$TARGET"; mv "$PART" "$TARGET"
echo "WordNet 3.0 installed in $TARGET"
