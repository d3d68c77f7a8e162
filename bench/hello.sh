#!/usr/bin/env bash
# Hello world only: bench/run.sh with SCENARIOS=hello (same environment variables,
# e.g. DURATION=5 ROUNDS=1 bash bench/hello.sh).  See bench/README.md.
set -euo pipefail
SCENARIOS=hello exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" "$@"
