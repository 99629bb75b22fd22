[ -f package.json ] || {
  echo 'kiln/node-start: looked for package.json: not found'
  exit 100
}
# A conventional entry file passes whatever package.json says (start script, main or the file
# itself), so the Build Plan (the one src/detect.ts writes) is written here without starting
# Node.js.
if [ -f server.js ] || [ -f app.js ] || [ -f index.js ] || [ -f main.js ]; then
  printf '[[requires]]\nname = "node"\n\n[requires.metadata]\nlaunch = true\n' >"${CNB_BUILD_PLAN_PATH:-$2}"
  exit 0
fi
