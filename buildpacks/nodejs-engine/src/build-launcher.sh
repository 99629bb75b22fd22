# bin/build runs the bundle (bin/build.js) on the Node.js this buildpack installed in an earlier
# build when the cache brought its layer back: the build image's Node.js (Debian's, built without a
# startup snapshot) takes about four times as long to start, most of a rebuild that changes
# nothing. Without a usable cached Node.js (first build, no cache, a major older than the bundle's
# target 18) the `node` on PATH runs it.
layers="${CNB_LAYERS_DIR:-$1}"
node=node
if [ -x "$layers/node/bin/node" ] && [ -f "$layers/node.toml" ]; then
  major=
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line#"${line%%[! 	]*}"}"
    case "$line" in
      'version = "'[0-9]* | "version = '"[0-9]*)
        major="${line#version = ?}"
        major="${major%%.*}"
        break
        ;;
    esac
  done < "$layers/node.toml"
  case "$major" in
    '' | *[!0-9]*) ;;
    *) [ "$major" -ge 18 ] && node="$layers/node/bin/node" ;;
  esac
fi
exec "$node" "${0%/*}/build.js" "$@"
