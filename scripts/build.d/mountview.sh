#!/usr/bin/env bash
# Builds dist/mountview/kiln-mountview (src/sandbox/mountview/mountview.c): the small static helper
# that gives each sandbox overlay roots instead of host paths in its mountinfo
# (src/sandbox/mount-view.ts falls back to a shell script when it is missing). Rebuilt only when
# its source or this script changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/src/sandbox/mountview/mountview.c"
out="${KILN_MOUNTVIEW_OUT:-$root/dist/mountview}"
cc="${MUSL_GCC:-musl-gcc}"
command -v "$cc" >/dev/null 2>&1 || cc=gcc
mkdir -p "$out"
flags=(-static -Os -std=c11 -Wall -Wextra -Werror -fno-ident -ffile-prefix-map="$root"=. -Wl,--build-id=none -s)
inputs_hash="$( { cat "$src" "$0"; printf '%s\n' "$cc" "${flags[*]}"; } | sha256sum | cut -d' ' -f1)"
if [ -x "$out/kiln-mountview" ] && [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs_hash" ]; then
  exit 0
fi
tmp="$(mktemp "$out/.kiln-mountview.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
(cd "$root" && "$cc" "${flags[@]}" -o "$tmp" src/sandbox/mountview/mountview.c)
chmod 0755 "$tmp"
mv "$tmp" "$out/kiln-mountview"
trap - EXIT
printf '%s\n' "$inputs_hash" > "$out/.inputs"
echo "==> kiln-mountview built: $out/kiln-mountview"
