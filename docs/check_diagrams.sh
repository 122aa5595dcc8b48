#!/bin/sh
# Parse every Mermaid diagram in the Markdown documents with Mermaid's own parser.
# Needs node (>= 18) and npm; installs the pinned mermaid package into docs/node_modules
# on first use (git ignores it). Usage, from anywhere: docs/check_diagrams.sh [FILE.md...]
set -eu
docs="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$docs")"
if [ ! -d "$docs/node_modules/mermaid" ]; then
    npm install --prefix "$docs" --no-audit --no-fund --no-package-lock --loglevel=error >&2
fi
cd "$root"
if [ "$#" -eq 0 ]; then
    set -- README.md SYSTEM_DESIGN.md
    for file in docs/*.md; do [ -e "$file" ] && set -- "$@" "$file"; done
fi
exec node "$docs/check_diagrams.mjs" "$@"
