# Sourced by bin/kiln and scripts/build.d/cli.sh (not a build step: build.sh runs only *.sh):
# what the bundled CLI (dist/cli) is built from, relative to the repository root. The bundle is
# stale once any of these is newer than dist/cli/main.js.
# shellcheck disable=SC2034 # used by the scripts that source this
kiln_cli_inputs=(src package.json package-lock.json node_modules/.package-lock.json
  scripts/build.d/cli-bundle.ts scripts/build.d/third-party-notices.ts scripts/build.d/cli.sh)
