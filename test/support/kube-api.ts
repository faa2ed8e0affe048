/**
 * A real kube-apiserver and etcd for the cluster tests (../shared/kube: built from Debian's own
 * packages on first use, about 3.5 minutes, then cached), with kubectl against it. Stopping and
 * starting again keeps the address, ports, certificates and etcd's data, so kubeconfigs and
 * resourceVersions stay valid across an outage.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./connect.js";

/** Beside the repository, as .ci/run expects ../shared (from dist/test/support: three levels up). */
const START = fileURLToPath(new URL("../../../../shared/kube/start-apiserver.sh", import.meta.url));

export interface Kubectl {
  code: number;
  stdout: string;
  stderr: string;
}

export class ApiServer {
  private constructor(
    readonly address: string,
    private readonly env: Record<string, string>,
    readonly kubeconfig: string,
  ) {}

  get runDir(): string {
    return this.env["RUN_DIR"] ?? "";
  }

  /** Starts (building first if needed) on `address`, which the test namespaces can reach. */
  static async start(address: string): Promise<ApiServer> {
    const runDir = spawnSync("mktemp", ["-d", "/dev/shm/knockgate-kube.XXXXXX"], { encoding: "utf8" }).stdout.trim();
    const env = {
      RUN_DIR: runDir,
      APISERVER_ADDRESS: address,
      ETCD_PORT: String(await freePort("127.0.0.1")),
      APISERVER_PORT: String(await freePort(address)),
    };
    const kubeconfig = ApiServer.launch(env);
    return new ApiServer(address, env, kubeconfig);
  }

  private static launch(env: Record<string, string>): string {
    // The first run builds the binaries: minutes, not seconds.
    const r = spawnSync("bash", [START], { env: { ...process.env, ...env }, encoding: "utf8", timeout: 15 * 60_000 });
    if (r.status !== 0) throw new Error(`start-apiserver.sh failed (${r.status}):\n${r.stderr.slice(-3000)}`);
    return r.stdout.trim().split("\n").at(-1) ?? "";
  }

  stop(): void {
    spawnSync("bash", [join(this.runDir, "stop.sh")], { timeout: 30_000 });
  }

  /** Starts again after stop(), same address, ports, keys and data. */
  restart(): void {
    ApiServer.launch(this.env);
  }

  kubectl(args: string[], input?: string, kubeconfig = this.kubeconfig): Kubectl {
    const r = spawnSync("kubectl", ["--kubeconfig", kubeconfig, ...args], { encoding: "utf8", input, timeout: 60_000 });
    return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
  }

  /** kubectl that must succeed. */
  must(args: string[], input?: string, kubeconfig = this.kubeconfig): string {
    const r = this.kubectl(args, input, kubeconfig);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed: ${r.stderr}`);
    return r.stdout;
  }

  /** A kubeconfig for the same server that authenticates with `token` only, written to `path`. */
  tokenKubeconfig(token: string, path: string, namespace: string): string {
    const admin = readFileSync(this.kubeconfig, "utf8");
    const server = /server: (\S+)/.exec(admin)?.[1] ?? "";
    const ca = /certificate-authority-data: (\S+)/.exec(admin)?.[1] ?? "";
    writeFileSync(
      path,
      [
        "apiVersion: v1",
        "kind: Config",
        `clusters: [{name: c, cluster: {server: "${server}", certificate-authority-data: "${ca}"}}]`,
        `users: [{name: u, user: {token: "${token}"}}]`,
        `contexts: [{name: x, context: {cluster: c, user: u, namespace: ${namespace}}}]`,
        "current-context: x",
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    return path;
  }

  destroy(): void {
    this.stop();
    if (this.runDir.startsWith("/dev/shm/knockgate-kube.")) rmSync(this.runDir, { recursive: true, force: true });
  }
}
