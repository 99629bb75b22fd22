[ -f go.mod ] || ls ./*.go >/dev/null 2>&1 || {
  echo 'kiln/go: looked for go.mod or *.go files: none found'
  exit 100
}
# go.mod passes whatever else is there: the Build Plan (the one src/detect.ts writes) is written
# here without starting Node.js.
if [ -f go.mod ]; then
  printf '[[provides]]\nname = "go"\n\n[[requires]]\nname = "go"\n' >"${CNB_BUILD_PLAN_PATH:-$2}"
  exit 0
fi
