#!/usr/bin/env bash
# Builds dist/init/kiln-init (src/sandbox/init/init.c): the static pid 1 of every sandbox
# (non-dumpable, so /proc/1/mem cannot be opened from inside; src/sandbox/sandbox-init.ts).
# Sandboxes do not start without it. Rebuilt only when its source or this script changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/src/sandbox/init/init.c"
out="${KILN_INIT_OUT:-$root/dist/init}"
cc="${MUSL_GCC:-musl-gcc}"
command -v "$cc" >/dev/null 2>&1 || cc=gcc
mkdir -p "$out"
flags=(-static -Os -std=c11 -Wall -Wextra -Werror -fno-ident -ffile-prefix-map="$root"=. -Wl,--build-id=none -s)
inputs_hash="$( { cat "$src" "$0"; printf '%s\n' "$cc" "${flags[*]}"; } | sha256sum | cut -d' ' -f1)"
if [ -x "$out/kiln-init" ] && [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs_hash" ]; then
  exit 0
fi
tmp="$(mktemp "$out/.kiln-init.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
(cd "$root" && "$cc" "${flags[@]}" -o "$tmp" src/sandbox/init/init.c)
chmod 0755 "$tmp"
mv "$tmp" "$out/kiln-init"
trap - EXIT
printf '%s\n' "$inputs_hash" > "$out/.inputs"
echo "==> kiln-init built: $out/kiln-init"
