#!/usr/bin/env bash
# Runs the whole test suite. Starts (and afterwards stops) what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
