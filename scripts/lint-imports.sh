#!/usr/bin/env bash
# Check the architecture contracts in .importlinter. The mandated top-level folders (runtime/, agents/, ...)
# are subpackages of interleaf.* through setuptools' package-dir, which grimp cannot follow; so lay them out
# as one importable tree in a temporary folder first (a plain copy, ~1 MB) and point lint-imports at it.
set -euo pipefail
cd "$(dirname "$0")/.."
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
python - "$tree" <<'PY'
import shutil, sys, tomllib
from pathlib import Path

tree = Path(sys.argv[1])
mapping = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
for package, folder in sorted(mapping.items(), key=lambda kv: kv[0].count(".")):
    target = tree.joinpath(*package.split("."))
    shutil.copytree(folder, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
PY
# lint-imports puts the working directory first on sys.path, so run it from the tree.
config="$PWD/.importlinter"
cd "$tree"
PYTHONPATH="$tree" lint-imports "$config" "$@"
