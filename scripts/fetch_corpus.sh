#!/usr/bin/env bash
# Fetch the demo model's training text: the Python 3.11 documentation sources from Debian's python3.11-doc package.
# Usage: scripts/fetch_corpus.sh [DEST]   (default: ~/.cache/edgebit/corpus)
set -euo pipefail
dest="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/edgebit/corpus}"
if compgen -G "$dest/usr/share/doc/python3.11/html/_sources/*" >/dev/null; then
  echo "$dest"; exit 0
fi
mkdir -p "$dest"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download python3.11-doc >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get download python3.11-doc >/dev/null; })
dpkg -x "$work"/python3.11-doc_*.deb "$dest"
echo "$dest"
