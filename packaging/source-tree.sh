#!/usr/bin/env bash
# Copy the working tree to DEST for a package build: `packaging/source-tree.sh DEST`.
# Uncommitted changes are included (a package is built from what is here, not from HEAD);
# the virtualenv, .git, caches and earlier build output are not.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$1"
mkdir -p "$DEST"
tar -C "$ROOT" -cf - \
    --exclude=./.git --exclude=./.venv --exclude=./.venv-newest --exclude=./dist --exclude=./build \
    --exclude=./debian \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pybuild \
    --exclude=.pytest_cache --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.hypothesis \
    --exclude=.coverage \
    . | tar -C "$DEST" -xf -
