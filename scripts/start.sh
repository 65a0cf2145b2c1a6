#!/usr/bin/env bash
# npm start: install and build what is missing, then run the controller on config/example.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "start: installing npm packages (npm ci)" >&2
  npm_config_build_from_source=true npm ci --no-audit --no-fund
fi
if [ ! -f dist/.built ] || [ -n "$(find src scripts tsconfig.json -newer dist/.built -print -quit)" ]; then
  echo "start: building (tsc)" >&2
  npx tsc -p tsconfig.json
  touch dist/.built
fi
exec node dist/src/cli/failoverctl.js serve --config "${FAILOVER_CONFIG:-config/example.yaml}" "$@"
