#!/usr/bin/env bash
# npm run bench:dns -- DNS throughput of the controller vs NSD with dnsperf (loopback only).
# Makes sure of the Debian packages (nsd, dnsperf, taskset from util-linux), builds, and runs
# dist/scripts/bench-dns.js. See scripts/bench-dns.ts for the method and the BENCH_* variables.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/sbin/nsd ] || need+=(nsd)
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench:dns: installing Debian packages: ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2
  else
    echo "bench:dns: missing Debian packages: ${need[*]} (apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

# Build (tsc still emits JavaScript when it reports type errors; those are reported, not fatal here).
if ! npx tsc -p tsconfig.json >/tmp/bench-dns-tsc.$$ 2>&1; then
  echo "bench:dns: warning: tsc reported errors (first lines below); using what it emitted" >&2
  head -20 /tmp/bench-dns-tsc.$$ >&2
fi
rm -f /tmp/bench-dns-tsc.$$
[ -f dist/scripts/bench-dns.js ] || { echo "bench:dns: dist/scripts/bench-dns.js was not built" >&2; exit 1; }

exec node dist/scripts/bench-dns.js "$@"
