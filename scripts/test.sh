#!/usr/bin/env bash
# Runs the test suite with node:test. `scripts/test.sh unit` skips the slow end-to-end tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/scripts/node.sh"
cd "$root"
if [ "${1:-}" = unit ]; then
  files=$(find src test -name '*.test.ts' -not -path '*/e2e/*' | sort)
else
  files=$(find src test -name '*.test.ts' | sort)
fi
# Tests start their own registries and sandboxes on random ports, so two files at a time is
# what a 2-core machine sustains.
exec node --test --test-concurrency=2 --test-timeout=600000 $files
