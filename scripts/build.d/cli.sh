#!/usr/bin/env bash
# Bundles the CLI into dist/cli/ (main.js + chunks; see cli-bundle.ts): bin/kiln starts ~0.15 s
# faster from it. Skipped while the bundle is fresh: nothing it is built from (cli-inputs.bash:
# src/, the package and lock files, the bundler) is newer than dist/cli/main.js — the test bin/kiln
# makes before using it, from the same list.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
. "$root/scripts/node.sh"
cd "$root"
out="${KILN_CLI_OUT:-dist/cli}"
mkdir -p "${out%/*}"
# One bundler at a time; the others then find it fresh.
exec 9>"${out%/*}/.cli.lock"
flock 9
# shellcheck source=cli-inputs.bash
. scripts/build.d/cli-inputs.bash
if [ -f "$out/main.js" ] && [ -z "$(find "${kiln_cli_inputs[@]}" -newer "$out/main.js" -print -quit 2>/dev/null)" ]; then
  exit 0
fi
started="$(date +%s%3N)"
tmp="$(mktemp -d "${out%/*}/.cli.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
node scripts/build.d/cli-bundle.ts "$tmp" "$started"
chmod 0755 "$tmp"
rm -rf "$out.old"
if [ -d "$out" ]; then mv "$out" "$out.old"; fi
mv "$tmp" "$out"
rm -rf "$out.old"
trap - EXIT
echo "==> bundled the CLI into $out"
