# knockgate: port-knocking daemon (libpcap + iptables/ipset or nftables).
#
#   docker build -t knockgate:local .
#   docker run -d --name knockgate --network host --cap-add NET_ADMIN --cap-add NET_RAW \
#     -e KNOCK_DOOR_SSH_SEQUENCE=7000,8000,9000 -e KNOCK_DOOR_SSH_PORTS=22/tcp knockgate:local
#   docker run --rm --network host knockgate:local knock HOST 7000 8000 9000
#
# See docs/deploy.md. Node.js 24 (the LTS line; 20 is past end of life), on Debian 12 (bookworm):
# node:24-slim means Debian 13.
#
# Build arguments, for the OCI labels (docker inspect) and what `knockgate version` reports:
#   VERSION   must be package.json's version (checked below); the default is written here because a
#             LABEL cannot read a file: bump it together with package.json
#   REVISION  the source commit, e.g. "$(git rev-parse HEAD)"; default "unknown"
#   CREATED   when the sources were made, RFC 3339, e.g. "$(git log -1 --format=%cI)" (the commit
#             time, so that rebuilding a commit gives the same labels); default "unknown"
#   SOURCE    where the sources are, e.g. "$(git remote get-url origin)"; default "unknown"
ARG VERSION=0.1.0

# ---- build: TypeScript and the `cap` native addon (node-gyp needs python3, make, g++, libpcap headers)
FROM node:24-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ libpcap-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
ARG VERSION
# The label and `knockgate version` (which reads package.json) must not disagree: fail early instead.
RUN node -e 'const v = require("./package.json").version; if (v !== process.env.VERSION) { console.error(`VERSION is "${process.env.VERSION}" but package.json says "${v}": build with --build-arg VERSION=${v}, or update ARG VERSION at the top of the Dockerfile`); process.exit(1); }'
COPY patches ./patches
# npm 11 runs cap's install script (node-gyp rebuild) because package.json's "allowScripts" lists it.
# Our postinstall then patches cap (snaplen, promisc, direction, stats) and rebuilds it. cap is an
# optional dependency, so a failed build would not fail npm ci: the last step of the next RUN does.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# Only src/ is in the build context (.dockerignore), so tsc emits dist/src alone. Then drop the
# devDependencies from node_modules (keeping the cap addon built above) and what only the build used,
# including type declarations and source maps: half of @kubernetes/client-node's 57 MB is those.
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/nan node_modules/cap/build/Release/obj.target node_modules/cap/build/Release/.deps \
           node_modules/cap/deps node_modules/cap/src node_modules/cap/test \
 && find node_modules \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -type f -delete \
 && find node_modules -depth -type d -name '@types' -exec rm -rf {} + \
 && find node_modules -mindepth 1 -maxdepth 1 -type d -empty -delete \
 && find dist -name '*.map' -delete \
 && node -e "if (typeof require('cap').Cap.prototype.stats !== 'function') throw new Error('npm cap is not patched')"

# ---- runtime: node, production dependencies, the firewall tools the daemon runs, tini
FROM node:24-bookworm-slim
# iptables: both iptables-nft and iptables-legacy (the daemon picks the variant the host uses);
# ipset and nftables: the two backends; libpcap0.8: capture; tini: PID 1 that forwards SIGTERM to
# node and reaps the ipset/nft children; coreutils (stdbuf) is already in the base image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 iptables ipset nftables tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
 && command -v stdbuf iptables-nft iptables-legacy ip6tables-nft ip6tables-legacy ipset nft tini >/dev/null
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src

# Runs as root on purpose: the daemon changes the firewall of the network namespace it is in (the
# host's, with --network host) and opens raw packet captures. That needs CAP_NET_ADMIN and
# CAP_NET_RAW; iptables, ipset and nft check for them in the effective set, which a non-root user
# only gets through file capabilities or ambient caps, fragile across runtimes and impossible with
# no-new-privileges. Root here is a root with only the capabilities the runtime grants: run it with
# --cap-drop ALL --cap-add NET_ADMIN --cap-add NET_RAW (and --read-only --tmpfs /run) to keep it so.
USER root

# Liveness only: the process answers on KNOCK_HTTP_ADDR (default 127.0.0.1:9180). No curl needed.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "/app/dist/src/cli/main.js", "healthcheck"]

# tini is PID 1, so `docker stop` (SIGTERM) reaches the daemon, which applies KNOCK_ON_EXIT and exits.
ENTRYPOINT ["tini", "--", "node", "/app/dist/src/cli/main.js"]
CMD ["run"]

# Last, so that a new commit changes only this metadata, not a layer.
ARG VERSION
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="knockgate" \
      org.opencontainers.image.description="Port-knocking appliance: sniffs knock sequences with libpcap and opens protected ports in kernel sets that expire on their own" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}"
# The image holds no .git: `knockgate version` and knockgate_build_info read the revision from here.
ENV KNOCKGATE_REVISION="${REVISION}"
