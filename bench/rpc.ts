/** JSON-lines request/reply over a child's stdin/stdout: the bench's helpers in the namespaces. */
import type { ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

type Handler = (request: Record<string, unknown> & { op: string }) => Promise<unknown>;

/** Child side: one JSON request per stdin line, one reply line per request (in completion order). */
export function serveRpc(handle: Handler): void {
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    const { id, ...request } = JSON.parse(line) as { id: number; op: string };
    handle(request).then(
      (result) => process.stdout.write(JSON.stringify({ id, result }) + "\n"),
      (err: Error) => process.stdout.write(JSON.stringify({ id, error: err.message ?? String(err) }) + "\n"),
    );
  });
  lines.on("close", () => process.exit(0));
}

/** Parent side. */
export class RpcClient {
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private next = 1;
  private exitError: Error | null = null;

  constructor(
    readonly child: ChildProcess,
    readonly name: string,
  ) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      let reply: { id: number; result?: unknown; error?: string };
      try {
        reply = JSON.parse(line) as typeof reply;
      } catch {
        process.stderr.write(`[${name}] ${line}\n`);
        return;
      }
      const call = this.calls.get(reply.id);
      this.calls.delete(reply.id);
      if (reply.error !== undefined) call?.reject(new Error(`${name}: ${reply.error}`));
      else call?.resolve(reply.result);
    });
    child.stderr?.on("data", (d: Buffer) => process.stderr.write(`[${name}] ${d.toString()}`));
    child.on("exit", (code, signal) => {
      this.exitError = new Error(`${name} exited (${code ?? signal})`);
      for (const call of this.calls.values()) call.reject(this.exitError);
      this.calls.clear();
    });
  }

  call<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    if (this.exitError) return Promise.reject(this.exitError);
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.stdin?.write(JSON.stringify({ id, op, ...args }) + "\n");
    });
  }
}
