# syntax=docker/dockerfile:1
# Multi-stage build: compile TypeScript with dev dependencies, ship only the runtime.
FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 is compiled from source (no prebuilt binary is fetched)
# golang-github-osrg-gobgp-dev: GoBGP's API definitions (api/*.proto), copied into the runtime below
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ golang-github-osrg-gobgp-dev && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm_config_build_from_source=true npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# the program alone (src/ -> dist/src/), as npm pack ships it
RUN npm run build:package && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production
# The commands the controller runs (src/external-commands.ts: ip, arping, ndptool, nft, conntrack,
# fping, ssh); test/deploy/external-commands.test.ts keeps this line equal to that list.
RUN apt-get update && apt-get install -y --no-install-recommends conntrack fping iproute2 iputils-arping libndp-tools nftables openssh-client && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# the page at /ui: static files served as they are
COPY --from=build /app/src/ui ./src/ui
# the bgp backend loads GoBGP's API definitions at run time, from where Debian's package puts them
COPY --from=build /usr/share/gocode/src/github.com/osrg/gobgp/api/*.proto /usr/share/gocode/src/github.com/osrg/gobgp/api/
COPY package.json ./
COPY config ./config
RUN mkdir -p /var/lib/failover && chown node:node /var/lib/failover
USER node
# DNS (UDP and TCP) and the HTTP API; port 5300 so that no privilege is needed (map 53 -> 5300).
EXPOSE 5300/udp 5300/tcp 8080/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/src/cli/failoverctl.js"]
CMD ["serve", "--config", "/app/config/docker.yaml"]
