#!/bin/sh
# Parse every Mermaid diagram in the Markdown documents with Mermaid's own parser.
# Needs node (>= 18) and npm; installs the pinned mermaid and jsdom packages into
# docs/node_modules on first use (git ignores it). Usage, from anywhere:
#   docs/check_diagrams.sh [FILE.md...]     (FILEs relative to the repository root;
#                                            default: README.md, SYSTEM_DESIGN.md, docs/*.md)
set -eu
docs="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$docs")"
for tool in node npm; do
    command -v "$tool" > /dev/null || { echo "check_diagrams.sh: needs $tool (node >= 18 and npm)" >&2; exit 2; }
done
if [ ! -d "$docs/node_modules/mermaid" ]; then
    npm install --prefix "$docs" --no-audit --no-fund --no-package-lock --loglevel=error >&2
fi
cd "$root"
if [ "$#" -eq 0 ]; then
    set -- README.md SYSTEM_DESIGN.md
    for file in docs/*.md; do [ -e "$file" ] && set -- "$@" "$file"; done
fi
exec node "$docs/check_diagrams.mjs" "$@"
