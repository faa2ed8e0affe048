/**
 * The bench's server helper, inside the server namespace: the protected service (port 22) and an
 * unrelated open port (8080), both echo servers on IPv4 and IPv6, plus a local HTTP client for the
 * daemon's /readyz and /metrics (the root namespace cannot reach them). JSON-lines RPC.
 */
import { createServer } from "node:net";
import { serveRpc } from "./rpc.js";
import { SERVICE_PORT, UNRELATED_PORT } from "./wire.js";

function listen(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer((s) => {
      s.on("error", () => undefined);
      s.pipe(s);
    });
    server.once("error", reject);
    // A deep backlog: the per-connection cost measurement opens thousands in a row.
    server.listen({ port, host: "::", backlog: 4096 }, () => resolve());
  });
}

await Promise.all([listen(SERVICE_PORT), listen(UNRELATED_PORT)]);

serveRpc(async (r) => {
  switch (r.op) {
    case "ping":
      return { ok: true };
    case "http": {
      try {
        const res = await fetch(r["url"] as string, {
          headers: (r["headers"] as Record<string, string> | undefined) ?? {},
          signal: AbortSignal.timeout((r["timeoutMs"] as number | undefined) ?? 3000),
        });
        return { status: res.status, body: await res.text() };
      } catch (err) {
        return { status: 0, body: (err as Error).message };
      }
    }
    default:
      throw new Error(`unknown op ${r.op}`);
  }
});
process.stdout.write(JSON.stringify({ id: 0, result: "ready" }) + "\n");
