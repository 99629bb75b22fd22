[ -f go.mod ] || ls ./*.go >/dev/null 2>&1 || {
  echo 'kiln/go: looked for go.mod or *.go files: none found'
  exit 100
}
