[ -f requirements.txt ] || [ -f pyproject.toml ] || [ -f setup.py ] || [ -f Pipfile ] || [ -f runtime.txt ] || [ -f .python-version ] || {
  echo 'kiln/python: looked for requirements.txt, pyproject.toml, setup.py, Pipfile, runtime.txt, .python-version: none found'
  exit 100
}
