#!/usr/bin/env bash
# npm test: installs what the suite needs, type-checks and builds, then runs every test.
# As root it installs missing Debian packages itself; otherwise it names them and fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package providing it. The first group is the program's own run-time commands
# (src/external-commands.ts, the same packages as the Dockerfile's runtime stage;
# test/deploy/external-commands.test.ts checks both); the second group is test-only.
declare -A NEED=(
  [ip]=iproute2                    # linux-route, linux-address; network-namespace labs
  [arping]=iputils-arping          # linux-address: gratuitous ARP
  [ndptool]=libndp-tools           # linux-address: unsolicited neighbour advertisements
  [nft]=nftables                   # linux-route connection pinning on the router
  [conntrack]=conntrack            # linux-route: drain pinned connections before the cut
  [fping]=fping                    # icmp prober
  [ssh]=openssh-client             # command prefixes such as ["ssh", "router"]
  # test-only
  [nsd]=nsd                        # differential test: a reference authoritative server
  [dig]=bind9-dnsutils             # differential test: an independent client
  [named-compilezone]=bind9-utils  # zone parser checked against BIND's
  [promtool]=prometheus            # metrics exposition and alert rules checked by Prometheus' own tools
  [dnsperf]=dnsperf                # bench:dns
  [taskset]=util-linux             # bench:dns CPU pinning
  [curl]=curl                      # API calls into a namespace (measurement tests)
  [unbound]=unbound                # MX audit lab: the recursive resolver
  [ldns-testns]=ldnsutils          # MX audit lab: malformed answers, zone signing
  [stress-ng]=stress-ng            # CPU load while checking that the suite passes under it
  [python3]=python3-minimal        # probers test: a TCP listener that never accepts
  [knotd]=knot                     # secondaries: Knot as a secondary (and reference primary)
  [knotc]=knot                     # secondaries: reloading the reference primary
  [named]=bind9                    # secondaries: BIND as a secondary
  [etcd]=etcd-server               # state on etcd: a real cluster for the etcd StateStore
  [etcdctl]=etcd-client            # state on etcd: reading what the store wrote
  [bird]=bird2                     # bgp lab: BIRD 2 as the provider's router
  [birdc]=bird2                    # bgp lab: reading the router's table (verify)
  [gobgpd]=gobgpd                  # bgp lab: the BGP daemon the bgp backend drives
  [chromium]=chromium              # the page at /ui in a real browser (playwright-core drives it)
)
# bgp backend: GoBGP's API definitions (api/*.proto), loaded at run time; a package without a command
GOBGP_PROTO=/usr/share/gocode/src/github.com/osrg/gobgp/api/gobgp.proto
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${NEED[$cmd]}")
done
[ -f "$GOBGP_PROTO" ] || missing+=(golang-github-osrg-gobgp-dev)
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing Debian packages: $pkgs" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  else
    echo "test: missing Debian packages: $pkgs" >&2
    echo "test: install them first:  sudo apt-get install -y $pkgs" >&2
    exit 1
  fi
fi
if [ "$(id -u)" != 0 ]; then
  echo "test: the suite starts NSD, Unbound and network namespaces and must run as root." >&2
  exit 1
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "test: installing npm packages (npm ci)" >&2
  npm_config_build_from_source=true npm ci --no-audit --no-fund
fi

echo "test: type-checking and building (tsc)" >&2
npx tsc -p tsconfig.json
mkdir -p .tmp dist && touch dist/.built

status=0
node --experimental-vm-modules node_modules/jest/bin/jest.js --json --outputFile=.tmp/jest-results.json "$@" || status=$?
if [ -f .tmp/jest-results.json ]; then
  node -e '
    const r = require("./.tmp/jest-results.json");
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));
  '
fi
exit $status
