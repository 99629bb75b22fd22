#!/usr/bin/env bash
# Builds dist/gate/kiln-gate (src/sandbox/gate/gate.c): the small static helper a sandbox run
# starts as ahead of need, placed in its cgroup before kiln sends it the command
# (src/sandbox/standby.ts; without it every run is placed on its own path, as before). Rebuilt
# only when its source or this script changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=scripts/build.d/static-helper.bash
. "$root/scripts/build.d/static-helper.bash"
build_static_helper kiln-gate src/sandbox/gate/gate.c "${KILN_GATE_OUT:-$root/dist/gate}"
