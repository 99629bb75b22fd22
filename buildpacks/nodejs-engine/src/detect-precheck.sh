[ -f package.json ] || [ -f .nvmrc ] || [ -f .node-version ] || {
  echo 'kiln/nodejs-engine: looked for package.json, .nvmrc or .node-version: none found'
  exit 100
}
