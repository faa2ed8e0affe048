# knockgate: port-knocking daemon (libpcap + iptables/ipset or nftables).
#
#   docker build -t knockgate:local .
#   docker run -d --name knockgate --network host --cap-add NET_ADMIN --cap-add NET_RAW \
#     -e KNOCK_DOOR_SSH_SEQUENCE=7000,8000,9000 -e KNOCK_DOOR_SSH_PORTS=22/tcp knockgate:local
#   docker run --rm --network host knockgate:local knock HOST 7000 8000 9000
#
# See docs/deploy.md. Base images are pinned to Debian 12 (bookworm): node:20-slim now means Debian 13.

# ---- build: TypeScript and the `cap` native addon (node-gyp needs python3, make, g++, libpcap headers)
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ libpcap-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
# npm 10 runs cap's install script (node-gyp rebuild) by itself; package.json's "allowScripts" is for npm 11.
# Our postinstall then patches cap (snaplen, promisc, direction, stats) and rebuilds it. cap is an
# optional dependency, so a failed build would not fail npm ci: the last step of the next RUN does.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# Only src/ is in the build context (.dockerignore), so tsc emits dist/src alone. Then drop the
# devDependencies from node_modules (keeping the cap addon built above) and what only the build used.
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/nan node_modules/cap/build/Release/obj.target node_modules/cap/build/Release/.deps \
           node_modules/cap/deps node_modules/cap/src node_modules/cap/test \
 && find node_modules -mindepth 1 -maxdepth 1 -type d -empty -delete \
 && find dist -name '*.map' -delete \
 && node -e "if (typeof require('cap').Cap.prototype.stats !== 'function') throw new Error('npm cap is not patched')"

# ---- runtime: node, production dependencies, the firewall tools the daemon runs, tini
FROM node:20-bookworm-slim
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
