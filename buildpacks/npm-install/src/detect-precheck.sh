[ -f package.json ] || {
  echo 'kiln/npm-install: looked for package.json: not found'
  exit 100
}
