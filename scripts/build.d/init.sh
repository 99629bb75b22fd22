#!/usr/bin/env bash
# Builds dist/init/kiln-init (src/sandbox/init/init.c): the static pid 1 of every sandbox
# (non-dumpable, so /proc/1/mem cannot be opened from inside; src/sandbox/sandbox-init.ts).
# Sandboxes do not start without it. Rebuilt only when its source or this script changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=scripts/build.d/static-helper.bash
. "$root/scripts/build.d/static-helper.bash"
build_static_helper kiln-init src/sandbox/init/init.c "${KILN_INIT_OUT:-$root/dist/init}"
