/** HTTP adapter: /healthz (the process answers), /readyz (protecting right now), /metrics. */
import { createServer, type Server } from "node:http";
import type { ListenAddr } from "../core/types.js";
import type { Registry } from "prom-client";

export interface Check {
  name: string;
  ok: boolean;
  detail?: string;
}

export interface HttpSources {
  readiness(): Promise<Check[]>;
  registry: Registry;
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
          const ready = checks.every((c) => c.ok);
          const reasons = checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail ?? "failing"}`);
          res.writeHead(ready ? 200 : 503, { "content-type": "application/json" }).end(JSON.stringify({ ready, reasons, checks }) + "\n");
        },
        (err: Error) => res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ ready: false, reasons: [err.message] }) + "\n"),
      );
    } else if (path === "/metrics") {
      sources.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": sources.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(`${err.message}\n`),
      );
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /healthz, /readyz, /metrics\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(addr.port, addr.host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}
