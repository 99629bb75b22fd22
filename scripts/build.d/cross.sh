#!/usr/bin/env bash
# Builds the static binaries kiln puts into images or sandboxes for the other architecture kiln
# builds for: on an amd64 machine, dist/arm64/launcher/launcher (+ build-info.json naming arm64
# for its SBOM), dist/arm64/init/kiln-init and dist/arm64/mountview/kiln-mountview, with Debian's
# cross compiler and arm64 musl (gcc-aarch64-linux-gnu, musl-dev:arm64; scripts/bootstrap.sh
# installs them). Same flags and reproducibility as the native builds (launcher.sh,
# static-helper.bash). The seccomp filter needs no second build: dist/seccomp/default.bpf already
# covers x86_64 and aarch64 (src/sandbox/seccomp/filter.c). Without the cross compiler this step
# says so and builds nothing: amd64 builds do not need it, `kiln build --platform linux/arm64` does.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
host="$(dpkg --print-architecture 2>/dev/null || uname -m)"
case "$host" in
  amd64) target=arm64 cc=aarch64-linux-musl-gcc ;;
  *) exit 0 ;; # other hosts build their own architecture only
esac
if ! command -v "$cc" >/dev/null 2>&1 || ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
  echo "==> $target binaries not built: $cc missing (apt-get install gcc-aarch64-linux-gnu musl-dev:$target after dpkg --add-architecture $target, or run scripts/bootstrap.sh)" >&2
  exit 0
fi
out="${KILN_CROSS_OUT:-$root/dist/$target}"
KILN_TARGET_ARCH="$target" MUSL_GCC="$cc" KILN_LAUNCHER_OUT="$out/launcher" bash "$root/scripts/build.d/launcher.sh"
# shellcheck source=scripts/build.d/static-helper.bash
. "$root/scripts/build.d/static-helper.bash"
MUSL_GCC="$cc" build_static_helper kiln-init src/sandbox/init/init.c "$out/init"
MUSL_GCC="$cc" build_static_helper kiln-mountview src/sandbox/mountview/mountview.c "$out/mountview"
