/**
 * knockgate filters packets to this host, never packets it forwards: the server namespace routes
 * for a client and for a "pod" (a namespace behind a veth, as a CNI plugin wires one) towards a far
 * host that also runs a service on the protected port. Real packets, real firewall, both backends.
 *
 *   client 198.18.0.2 --- 198.18.0.1 [server: knockgate, sshd on 22] 198.18.2.1 --- 198.18.2.2 far (22)
 *                                      198.18.3.1 --- 198.18.3.2 pod
 * IPv6: the lab's fd00:198:18::/64 on the client link; /112 pieces of it on the routed links.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6, removeStaleNamespaces, withLab, type Lab } from "../support/lab.js";
import { killNamespace } from "../support/netns.js";

const SEQ = "7000,8000,9000";
const FAR_V4 = "198.18.2.2";
const FAR_V6 = "fd00:198:18::2:2";
const POD_V4 = "198.18.3.2";
/** The server's address on the pod's link, which the pod reaches without routing. */
const POD_GATEWAY_V6 = "fd00:198:18::3:1";

before(() => {
  assert.equal(process.getuid?.(), 0, "the namespace tests need root: run them as root (CI does)");
  removeStaleNamespaces();
});
after(() => removeStaleNamespaces());

const ip = (args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });

/** The far host and the pod, routed through the server namespace; removed by the returned function. */
function routedNeighbours(lab: Lab): { far: string; pod: string; remove: () => void } {
  const far = lab.server.replace(/-srv$/, "-far");
  const pod = lab.server.replace(/-srv$/, "-pod");
  const remove = () => [far, pod].forEach(killNamespace);
  try {
    for (const ns of [far, pod]) ip(["netns", "add", ns]);
    const links: [string, string, string, string[], string[]][] = [
      [far, "kgsf", "kgf0", ["198.18.2.1/24", "fd00:198:18::2:1/112"], [`${FAR_V4}/24`, `${FAR_V6}/112`]],
      [pod, "kgsp", "kgp0", ["198.18.3.1/24", `${POD_GATEWAY_V6}/112`], [`${POD_V4}/24`, "fd00:198:18::3:2/112"]],
    ];
    for (const [ns, serverEnd, end, serverAddrs, addrs] of links) {
      ip(["link", "add", serverEnd, "netns", lab.server, "type", "veth", "peer", "name", end, "netns", ns]);
      for (const a of serverAddrs) ip(["-n", lab.server, "addr", "add", a, "dev", serverEnd, ...(a.includes(":") ? ["nodad"] : [])]);
      for (const a of addrs) ip(["-n", ns, "addr", "add", a, "dev", end, ...(a.includes(":") ? ["nodad"] : [])]);
      for (const [where, dev] of [[lab.server, serverEnd], [ns, end], [ns, "lo"]] as const) ip(["-n", where, "link", "set", dev, "up"]);
      ip(["-n", ns, "route", "add", "default", "via", serverAddrs[0]!.split("/")[0]!]);
      ip(["-n", ns, "-6", "route", "add", "default", "via", serverAddrs[1]!.split("/")[0]!]);
    }
    ip(["-n", lab.client, "route", "add", "198.18.2.0/23", "via", SERVER_V4]);
    ip(["-n", lab.client, "-6", "route", "add", "fd00:198:18::2:0/112", "via", SERVER_V6]);
    for (const key of ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]) execFileSync("ip", ["netns", "exec", lab.server, "sysctl", "-qw", key]);
  } catch (err) {
    remove();
    throw err;
  }
  return { far, pod, remove };
}

/**
 * Time for a connect that must pass: the first SYN over a fresh routed link may wait for neighbour
 * discovery, and TCP resends it only after a second.
 */
const PASSES_MS = 3000;

/** A TCP connect from inside `ns`, with a time limit: true when accepted. */
async function connectsFrom(lab: Lab, ns: string, host: string, timeoutMs = 400, port = 22): Promise<boolean> {
  const script = `const s = require("net").connect({ host: ${JSON.stringify(host)}, port: ${port} }); s.setTimeout(${timeoutMs}, () => process.exit(1)); s.on("connect", () => process.exit(0)); s.on("error", () => process.exit(1));`;
  return (await lab.exec(ns, [process.execPath, "-e", script])).code === 0;
}

for (const backend of ["iptables", "nftables"] as const) {
  describe(`${backend}: only packets to this host are filtered`, { concurrency: false }, () => {
    test("the client and a pod routed through the host reach another host's protected port; this host's stays closed until knocked", () =>
      withLab(async (lab) => {
        const { far, pod, remove } = routedNeighbours(lab);
        try {
          await lab.startService();
          await lab.startService(22, far);
          const daemon = await lab.startDaemon({ KNOCK_DOOR_SSH_SEQUENCE: SEQ, KNOCK_FIREWALL: backend });

          assert.equal(await lab.canConnect(SERVER_V4), false, "this host's port 22 is closed to the client (IPv4)");
          assert.equal(await lab.canConnect(SERVER_V6), false, "this host's port 22 is closed to the client (IPv6)");
          assert.equal(await connectsFrom(lab, pod, "198.18.3.1"), false, "and to the pod (IPv4)");
          assert.equal(await connectsFrom(lab, pod, POD_GATEWAY_V6), false, "and to the pod (IPv6)");
          assert.equal(await lab.canConnect(FAR_V4, { timeoutMs: PASSES_MS }), true, "routed traffic to another host's port 22 passes (IPv4)");
          assert.equal(await lab.canConnect(FAR_V6, { timeoutMs: PASSES_MS }), true, "routed traffic to another host's port 22 passes (IPv6)");
          assert.equal(await connectsFrom(lab, pod, FAR_V4, PASSES_MS), true, "pod egress to port 22 elsewhere passes (IPv4)");
          assert.equal(await connectsFrom(lab, pod, FAR_V6, PASSES_MS), true, "pod egress to port 22 elsewhere passes (IPv6)");

          await lab.knock(SERVER_V4, SEQ);
          await daemon.waitFor("open");
          assert.equal(await lab.canConnect(SERVER_V4), true, "the knocker gets in");
          assert.equal(await connectsFrom(lab, pod, "198.18.3.1"), false, "the pod did not knock");
          assert.equal(await lab.canConnect(SERVER_V4, { localAddress: CLIENT_V4 }), true);
          assert.equal(await lab.canConnect(SERVER_V6), false, "an IPv4 knock does not open IPv6");
          // The IPv6 path to this host works: what kept it closed above was the firewall.
          await lab.knock(SERVER_V6, SEQ);
          await daemon.waitFor("open", 5000, (l) => l["src"] === CLIENT_V6);
          assert.equal(await lab.canConnect(SERVER_V6), true, "the IPv6 knocker gets in over IPv6");
          assert.equal(await connectsFrom(lab, pod, POD_GATEWAY_V6), false, "the pod still did not knock (IPv6)");
        } finally {
          remove();
        }
      }));
  });
}
