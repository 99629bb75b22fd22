[ -f package.json ] || {
  echo 'kiln/npm-install: looked for package.json: not found'
  exit 100
}
# package.json with a lock file passes whatever package.json says, so the Build Plan (the one
# src/detect.ts writes) is written here without starting Node.js; without a lock file, detect.js
# looks for dependencies.
if [ -f package-lock.json ] || [ -f npm-shrinkwrap.json ] || [ -f pnpm-lock.yaml ] || [ -f yarn.lock ]; then
  printf '[[requires]]\nname = "node"\n\n[requires.metadata]\nbuild = true\nlaunch = true\n\n[[requires]]\nname = "npm"\n\n[requires.metadata]\nbuild = true\n' >"${CNB_BUILD_PLAN_PATH:-$2}"
  exit 0
fi
