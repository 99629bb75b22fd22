[ -f package.json ] || {
  echo 'kiln/node-start: looked for package.json: not found'
  exit 100
}
