# Sourced by the build steps of kiln's small static C helpers (init.sh, mountview.sh): one way to
# compile them reproducibly (musl when present, no build id, no paths) and to rebuild only when the
# source, the calling script, the compiler or the flags changed.
# build_static_helper NAME SOURCE OUT_DIR: SOURCE relative to the repository root.
build_static_helper() {
  local name="$1" rel="$2" out="$3"
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  local cc="${MUSL_GCC:-musl-gcc}"
  command -v "$cc" >/dev/null 2>&1 || cc=gcc
  mkdir -p "$out"
  local flags=(-static -Os -std=c11 -Wall -Wextra -Werror -fno-ident -ffile-prefix-map="$root"=. -Wl,--build-id=none -s)
  local inputs_hash
  inputs_hash="$( { cat "$root/$rel" "$0" "${BASH_SOURCE[0]}"; printf '%s\n' "$cc" "${flags[*]}"; } | sha256sum | cut -d' ' -f1)"
  if [ -x "$out/$name" ] && [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs_hash" ]; then
    return 0
  fi
  local tmp
  tmp="$(mktemp "$out/.$name.XXXXXX")"
  trap 'rm -f "$tmp"' EXIT
  (cd "$root" && "$cc" "${flags[@]}" -o "$tmp" "$rel")
  chmod 0755 "$tmp"
  mv "$tmp" "$out/$name"
  trap - EXIT
  printf '%s\n' "$inputs_hash" > "$out/.inputs"
  echo "==> $name built: $out/$name"
}
