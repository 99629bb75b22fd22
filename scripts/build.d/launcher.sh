#!/usr/bin/env bash
# Builds dist/launcher/launcher, the static launcher that goes into every image kiln exports,
# and dist/launcher/build-info.json (version, sha256 and the musl it links, for its SBOM).
# Reproducible: fixed flags, no timestamps or build paths in the binary, no build id, stripped.
# Rebuilds only when the sources or this script changed (a hash of them is kept in the output dir).
# KILN_TARGET_ARCH (a Debian architecture, default this machine's) with MUSL_GCC and
# KILN_LAUNCHER_OUT builds another architecture's launcher (cross.sh: arm64 on amd64).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/src/launcher/launcher.c"
out="${KILN_LAUNCHER_OUT:-$root/dist/launcher}"
cc="${MUSL_GCC:-musl-gcc}"
mkdir -p "$out"

version="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$root/package.json" | head -n1)"
arch="${KILN_TARGET_ARCH:-$(dpkg --print-architecture 2>/dev/null || uname -m)}"
musl_version="$(dpkg-query -W -f='${Version}' "musl-dev:$arch" 2>/dev/null || dpkg-query -W -f='${Version}' musl-dev 2>/dev/null || echo unknown)"
distro="$(. /etc/os-release && echo "${ID:-linux}-${VERSION_ID:-unknown}")"
flags=(-static -Os -std=c11 -Wall -Wextra -Werror -fno-ident -ffile-prefix-map="$root"=. -fno-asynchronous-unwind-tables
       -ffunction-sections -fdata-sections -Wl,--gc-sections -Wl,--build-id=none -s)
inputs_hash="$( { cat "$src" "$0"; printf '%s\n' "$version" "$musl_version" "$arch" "$distro" "$cc" "${flags[*]}"; "$cc" --version 2>/dev/null | head -n1; } | sha256sum | cut -d' ' -f1)"
if [ -x "$out/launcher" ] && [ -f "$out/build-info.json" ] && [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs_hash" ]; then
  exit 0
fi

tmp="$(mktemp "$out/.launcher.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
# Relative source path + a fixed working directory keep paths out of the output.
(cd "$root" && SOURCE_DATE_EPOCH=315532801 "$cc" "${flags[@]}" -o "$tmp" src/launcher/launcher.c)
chmod 0755 "$tmp"
sha="$(sha256sum "$tmp" | cut -d' ' -f1)"
size="$(stat -c %s "$tmp")"
cat > "$out/build-info.json.tmp" <<JSON
{
  "name": "kiln-launcher",
  "version": "$version",
  "sha256": "$sha",
  "size": $size,
  "arch": "$arch",
  "musl": { "package": "musl-dev", "source": "musl", "version": "$musl_version", "arch": "$arch", "distro": "$distro" }
}
JSON
mv "$tmp" "$out/launcher"
trap - EXIT
mv "$out/build-info.json.tmp" "$out/build-info.json"
printf '%s\n' "$inputs_hash" > "$out/.inputs"
echo "==> launcher $version built: $out/launcher ($size bytes, sha256 $sha)"
