#!/usr/bin/env bash
# Builds the parts of kiln that are not plain TypeScript: the static launcher, the bundled
# buildpacks and the bundled CLI (bin/kiln's fast start). Outputs land in dist/ and are rebuilt
# only when their sources changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/scripts/node.sh"
cd "$root"
for step in scripts/build.d/*.sh; do
  [ -e "$step" ] || continue
  bash "$step"
done
