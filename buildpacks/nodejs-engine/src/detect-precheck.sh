[ -f package.json ] || [ -f .nvmrc ] || [ -f .node-version ] || {
  echo 'kiln/nodejs-engine: looked for package.json, .nvmrc or .node-version: none found'
  exit 100
}
# No version declared anywhere (no BP_NODE_VERSION, .nvmrc, .node-version, and no "engines" in
# package.json, nor a \u escape that could spell it; grep's status 1 is "searched, not found"): the
# Build Plan (the one src/detect.ts writes for an unpinned app) is written here without Node.js.
found=0
if [ -z "${BP_NODE_VERSION:-}" ] && [ ! -e .nvmrc ] && [ ! -e .node-version ] && [ -f package.json ]; then
  grep -q -e '"engines"' -e '\\u' package.json
  found=$?
fi
if [ "$found" -eq 1 ]; then
  printf 'requires = []\n\n[[provides]]\nname = "node"\n\n[[provides]]\nname = "npm"\n\n[[or]]\nrequires = []\n\n[[or.provides]]\nname = "node"\n' >"${CNB_BUILD_PLAN_PATH:-$2}"
  exit 0
fi
