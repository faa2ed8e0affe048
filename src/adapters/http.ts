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
import type { Clock } from "../core/clock.js";
import { errorFields } from "../core/errors.js";
import type { ListenAddr } from "../core/types.js";
import { HTTP_TIMEOUTS, limitConnections } from "./http-connections.js";
import type { Logger } from "./log.js";

export interface Check {
  name: string;
  ok: boolean;
  detail?: string;
  /** Shown, but a failure does not make /readyz fail (the cluster check: see docs/clusters.md, Readiness). */
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

/**
 * /readyz answers anyone, so what it shows names what is wrong, never who: the checks' messages
 * come from firewall commands, the Kubernetes API and the like, and may quote a client's address
 * (`ipset add ... 198.18.0.2`) or a KnockGrant name that encodes one (`ssh.4.c6120002`). Those are
 * written as <address> and <knockgrant>; the log keeps them.
 */
const ADDRESS_TEXT: readonly [RegExp, string][] = [
  [/\b[a-z0-9-]+\.[46]\.[0-9a-f]{8,32}(?:\.[0-9]{1,5}-(?:tcp|udp))*\b/gi, "<knockgrant>"],
  [/\b\d{1,3}(?:\.\d{1,3}){3}\b/g, "<address>"],
  // IPv6: eight groups, or fewer around "::" (which a time like 12:00:00 never has).
  [/(?<![\w:])(?:(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4})*)?::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4})*)?)(?![\w:])/gi, "<address>"],
];

export function withoutAddresses(text: string): string {
  return ADDRESS_TEXT.reduce((t, [pattern, replacement]) => t.replace(pattern, replacement), text);
}

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

export function startHttp(addr: ListenAddr, sources: HttpSources, clock: Clock, log: Logger): Promise<Server> {
  const { connectionsCheckingInterval, ...timeouts } = HTTP_TIMEOUTS;
  let lastReadinessError: string | null = null;
  const server = createServer({ connectionsCheckingInterval }, (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      sources.readiness().then(
        (all) => {
          lastReadinessError = null;
          const checks = all.map((c) => (c.detail === undefined ? c : { ...c, detail: withoutAddresses(c.detail) }));
          const ready = checks.every((c) => c.ok || c.advisory);
          const reasons = checks.filter((c) => !c.ok && !c.advisory).map((c) => `${c.name}: ${c.detail ?? "failing"}`);
          res.writeHead(ready ? 200 : 503, { "content-type": "application/json" }).end(JSON.stringify({ ready, reasons, checks, ...sources.details?.() }) + "\n");
        },
        (err: unknown) => {
          // As for /metrics: the error can quote a command or a listing; the log has it, the answer
          // names the event. Logged when it changes: a probe every few seconds would repeat it.
          const fields = errorFields(err);
          if (fields.err !== lastReadinessError) log.error({ event: "readiness_failed", ...fields }, "reading readiness failed");
          lastReadinessError = fields.err;
          res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ ready: false, reasons: ["reading readiness failed: the daemon's log has the error (event readiness_failed)"] }) + "\n");
        },
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
        (err: unknown) => {
          // A collector's error can quote a kernel listing or a command line: the log has it, the answer does not.
          log.error({ event: "metrics_failed", ...errorFields(err) }, "reading the metrics failed");
          res.writeHead(500, { "content-type": "text/plain" }).end("reading the metrics failed: the daemon's log has the error (event metrics_failed)\n");
        },
      );
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /healthz, /readyz, /metrics\n");
    }
  });
  Object.assign(server, timeouts);
  limitConnections(server, clock);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(addr.port, addr.host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}
