#!/usr/bin/env bash
# Builds dist/mountview/kiln-mountview (src/sandbox/mountview/mountview.c): the small static helper
# that gives each sandbox overlay roots instead of host paths in its mountinfo
# (src/sandbox/mount-view.ts falls back to a shell script when it is missing). Rebuilt only when
# its source or this script changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=scripts/build.d/static-helper.bash
. "$root/scripts/build.d/static-helper.bash"
build_static_helper kiln-mountview src/sandbox/mountview/mountview.c "${KILN_MOUNTVIEW_OUT:-$root/dist/mountview}"
