[ -f Procfile ] || {
  echo 'kiln/procfile: looked for a Procfile with at least one "type: command" line: none found'
  exit 100
}
