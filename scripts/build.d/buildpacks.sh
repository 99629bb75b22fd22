#!/usr/bin/env bash
# Bundles kiln's own buildpacks (buildpacks/<name>/src/{detect,build}.ts) into self-contained
# JavaScript that Debian's Node.js 18 in the build image runs: dist/buildpacks/<name>/ holds
# buildpack.toml and bin/detect, bin/build. The builder picks the buildpacks up from there.
# Skipped when nothing under buildpacks/ (or the lock file) changed since the last bundle.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
. "$root/scripts/node.sh"
cd "$root"
out="${KILN_BUILDPACKS_OUT:-dist/buildpacks}"
stamp="$out/.inputs.sha256"
mkdir -p "${out%/*}"
# One bundler at a time (test files run this concurrently); the others then find it up to date.
exec 9>"${out%/*}/.buildpacks.lock"
flock 9
inputs=$( (find buildpacks -type f -not -name '*.test.ts' -not -name '*.md' | LC_ALL=C sort | xargs sha256sum; sha256sum package-lock.json scripts/build.d/buildpacks.sh) | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
  exit 0
fi
tmp="$(mktemp -d "${out%/*}/.buildpacks.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
for dir in buildpacks/*/; do
  name="$(basename "$dir")"
  case "$name" in _*) continue ;; esac
  [ -f "$dir/buildpack.toml" ] || continue
  mkdir -p "$tmp/$name/bin"
  cp "$dir/buildpack.toml" "$tmp/$name/buildpack.toml"
  # bin/* are CommonJS; this pins that even when the buildpack sits under a "type": "module" tree.
  printf '{"type":"commonjs","private":true}\n' > "$tmp/$name/package.json"
  for phase in detect build; do
    esbuild "$dir/src/$phase.ts" --bundle --platform=node --target=node18 --format=cjs \
      --banner:js='#!/usr/bin/env node' --legal-comments=none --log-level=warning \
      --outfile="$tmp/$name/bin/$phase"
    chmod 0755 "$tmp/$name/bin/$phase"
  done
done
echo "$inputs" > "$tmp/.inputs.sha256"
# Swap in with one rename where possible: readers (a builder being created) never see a
# half-written tree; an old tree is moved aside first, which leaves a short window without one.
rm -rf "$out.old"
if [ -d "$out" ]; then mv "$out" "$out.old"; fi
mv "$tmp" "$out"
rm -rf "$out.old"
trap - EXIT
echo "==> bundled buildpacks into $out"
