#!/usr/bin/env bash
# Builds dist/seccomp/default.bpf, the seccomp program every sandboxed process runs under
# (bwrap --seccomp), plus default.txt (libseccomp's readable listing of the same filter).
# src/sandbox/seccomp/filter.c is compiled against Debian's libseccomp-dev and run once; the
# program it writes depends only on its source and the libseccomp version, so two builds give
# the same bytes. Rebuilds only when the sources, this script or libseccomp changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/src/sandbox/seccomp/filter.c"
out="${KILN_SECCOMP_OUT:-$root/dist/seccomp}"
cc="${CC:-gcc}"
mkdir -p "$out"

if [ ! -f /usr/include/seccomp.h ] || ! libseccomp="$(dpkg-query -W -f='${Version}' libseccomp-dev 2>/dev/null)"; then
  echo "error: libseccomp-dev is not installed; the sandbox's seccomp filter needs it: apt-get install libseccomp-dev (or run scripts/bootstrap.sh)" >&2
  exit 1
fi
arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
flags=(-std=c11 -O2 -Wall -Wextra -Werror)
inputs_hash="$( { cat "$src" "$0"; printf '%s\n' "$libseccomp" "$arch" "$cc" "${flags[*]}"; } | sha256sum | cut -d' ' -f1)"
if [ -f "$out/default.bpf" ] && [ -f "$out/default.txt" ] && [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs_hash" ]; then
  exit 0
fi

work="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$cc" "${flags[@]}" -o "$work/kiln-seccomp" "$src" -lseccomp
"$work/kiln-seccomp" "$work/default.bpf" "$work/default.txt"
size="$(stat -c %s "$work/default.bpf")"
# A BPF program is a whole number of 8-byte instructions, at most 4096 of them (BPF_MAXINSNS).
if [ "$size" -eq 0 ] || [ $((size % 8)) -ne 0 ] || [ "$size" -gt 32768 ]; then
  echo "error: $src wrote a $size-byte program: expected 1 to 4096 BPF instructions of 8 bytes" >&2
  exit 1
fi
chmod 0644 "$work/default.bpf" "$work/default.txt"
mv "$work/default.txt" "$out/default.txt"
mv "$work/default.bpf" "$out/default.bpf"
printf '%s\n' "$inputs_hash" > "$out/.inputs"
echo "==> seccomp filter built: $out/default.bpf ($size bytes, sha256 $(sha256sum "$out/default.bpf" | cut -d' ' -f1), libseccomp $libseccomp)"
