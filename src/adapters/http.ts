/**
 * HTTP adapter: /healthz (the process answers), /readyz (protecting right now), /metrics.
 *
 * /metrics serves the public set to anyone, and the full set (with what moves before a grant) only
 * to a request that carries the bearer token from KNOCK_METRICS_TOKEN_FILE, as Prometheus'
 * `authorization.credentials_file` or kube-rbac-proxy setups send it.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Registry } from "prom-client";
import type { ListenAddr } from "../core/types.js";

export interface Check {
  name: string;
  ok: boolean;
  detail?: string;
  /** Shown, but a failure does not make /readyz fail (the cluster check: see README, Clusters). */
  advisory?: boolean;
}

export interface HttpSources {
  readiness(): Promise<Check[]>;
  /** More for the /readyz JSON (each door's effective ports); never a secret. */
  details?(): Record<string, unknown>;
  metrics: {
    public: Registry;
    full: Registry;
    /** null: no token configured, so only the public set is served. */
    token: string | null;
  };
}

/** Probes and scrapers need a handful; more at once is someone hammering the port. */
export const MAX_CONNECTIONS = 32;

type Access = "public" | "full" | "denied";

/** Constant-time: comparing digests of equal length, so neither content nor length leaks. */
function access(req: IncomingMessage, token: string | null): Access {
  const header = req.headers.authorization;
  if (header === undefined) return "public";
  const presented = /^Bearer (.+)$/i.exec(header)?.[1];
  if (token === null || presented === undefined) return "denied";
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(presented), digest(token)) ? "full" : "denied";
}

export function startHttp(addr: ListenAddr, sources: HttpSources): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      sources.readiness().then(
        (checks) => {
          const ready = checks.every((c) => c.ok || c.advisory);
          const reasons = checks.filter((c) => !c.ok && !c.advisory).map((c) => `${c.name}: ${c.detail ?? "failing"}`);
          res.writeHead(ready ? 200 : 503, { "content-type": "application/json" }).end(JSON.stringify({ ready, reasons, checks, ...sources.details?.() }) + "\n");
        },
        (err: Error) => res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ ready: false, reasons: [err.message] }) + "\n"),
      );
    } else if (path === "/metrics") {
      const { metrics } = sources;
      const level = access(req, metrics.token);
      if (level === "denied") {
        res.writeHead(401, { "www-authenticate": 'Bearer realm="knockgate"', "content-type": "text/plain" }).end("wrong or unexpected bearer token\n");
        return;
      }
      const registry = level === "full" ? metrics.full : metrics.public;
      registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(`${err.message}\n`),
      );
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /healthz, /readyz, /metrics\n");
    }
  });
  server.maxConnections = MAX_CONNECTIONS;
  // A client that trickles its request must not hold a connection slot for long.
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(addr.port, addr.host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}
