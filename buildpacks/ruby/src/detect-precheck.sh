[ -f Gemfile ] || {
  echo 'kiln/ruby: looked for Gemfile: none found'
  exit 100
}
