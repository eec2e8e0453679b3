#!/usr/bin/env bash
# The test suite: real redis-server, real Ray (local), real HTTP on 127.0.0.1, the real model.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled
exec python -m pytest -q "$@"
