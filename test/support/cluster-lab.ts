/**
 * Three "nodes" and a client on one switch, and a real API server the nodes reach: the lab of the
 * cluster tests. Composes lab.ts's Lab (its server namespace is node A, its client the client) with
 * two more node namespaces and a bridge. The bridge lives in a namespace of its own: in the root
 * namespace, with br_netfilter loaded and Docker's FORWARD policy DROP, it would drop the traffic
 * between the namespaces (../shared/kube/README.md). The root namespace joins the bridge with one
 * veth whose root end holds API_ADDRESS, where the API server listens. Everything is on
 * 198.19.77.0/24 and fd00:198:18:77::/64, apart from the other labs' 198.18.0.0/24.
 */
import { execFileSync } from "node:child_process";
import { Lab, type DaemonProcess } from "./lab.js";

export const NET = "198.19.77";
export const API_ADDRESS = `${NET}.254`;
/** Client addresses, one per test so grants of one test never meet another's. */
export const CLIENT_ADDRESSES = [2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16].map((n) => `${NET}.${n}`);
export const CLIENT_V6 = "fd00:198:18:77::2";
export const NODE_NAMES = ["node-a", "node-b", "node-c"] as const;
const IFACE = "kn0";

function ip(args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

export interface Node {
  name: string;
  ns: string;
  addr: string;
  addr6: string;
  http: string;
}

export class ClusterLab extends Lab {
  override readonly serverIface = IFACE;
  override readonly clientIface = "kc0";
  readonly bridge: string;
  readonly nodes: Node[];

  private constructor() {
    super();
    this.bridge = this.server.replace(/-srv$/, "-br");
    const spaces = [this.server, this.server.replace(/-srv$/, "-nb"), this.server.replace(/-srv$/, "-nc")];
    this.nodes = NODE_NAMES.map((name, i) => ({ name, ns: spaces[i] ?? "", addr: `${NET}.${11 + i}`, addr6: `fd00:198:18:77::${11 + i}`, http: `${NET}.${11 + i}:9180` }));
  }

  protected override namespaces(): string[] {
    return [...this.nodes.map((n) => n.ns), this.client, this.bridge];
  }

  static createCluster(): ClusterLab {
    const lab = new ClusterLab();
    for (const ns of lab.namespaces()) ip(["netns", "add", ns]);
    const br = lab.bridge;
    ip(["-n", br, "link", "add", "kgbr", "type", "bridge"]);
    ip(["-n", br, "link", "set", "kgbr", "up"]);
    const ends: [string, string, string[]][] = [
      ...lab.nodes.map((n): [string, string, string[]] => [n.ns, IFACE, [`${n.addr}/24`, `${n.addr6}/64`]]),
      [lab.client, lab.clientIface, [...CLIENT_ADDRESSES.map((a) => `${a}/24`), `${CLIENT_V6}/64`]],
    ];
    ends.forEach(([ns, iface, addrs], i) => {
      ip(["link", "add", iface, "netns", ns, "type", "veth", "peer", "name", `kgp${i}`, "netns", br]);
      for (const addr of addrs) ip(["-n", ns, "addr", "add", addr, "dev", iface, ...(addr.includes(":") ? ["nodad"] : [])]);
      ip(["-n", ns, "link", "set", iface, "up"]);
      ip(["-n", ns, "link", "set", "lo", "up"]);
      ip(["-n", br, "link", "set", `kgp${i}`, "master", "kgbr", "up"]);
    });
    // The root end: deleted with the bridge namespace, which takes its peer.
    const root = `kgr${process.pid}`;
    ip(["link", "add", root, "type", "veth", "peer", "name", "kgpr", "netns", br]);
    ip(["addr", "add", `${API_ADDRESS}/24`, "dev", root]);
    ip(["link", "set", root, "up"]);
    ip(["-n", br, "link", "set", "kgpr", "master", "kgbr", "up"]);
    return lab;
  }

  /** knockgate on one node, capturing and serving HTTP on the node's switch port; not waited for. */
  startNode(node: Node, env: Record<string, string | undefined>): Promise<DaemonProcess> {
    return this.startDaemon({ KNOCK_INTERFACE: IFACE, KNOCK_HTTP_ADDR: node.http, KNOCK_NODE_NAME: node.name, ...env }, false, node.ns);
  }

  nodeHttp(node: Node, path: string): Promise<{ status: number; body: string }> {
    return this.http(path, {}, node.ns, node.http);
  }

  nodeMetrics(node: Node): Promise<string> {
    return this.metrics(node.ns, node.http);
  }
}
