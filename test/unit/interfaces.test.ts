import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { defaultRouteInterfacesV4, defaultRouteInterfacesV6 } from "../../src/adapters/interfaces.js";
import { interfaceState } from "../../src/adapters/capture.js";

// As the kernel prints it: tab-separated, a trailing tab and spaces on every line.
const PROC_NET_ROUTE = [
  "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT                                                       ",
  "eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0                                                                               ",
  "eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0                                                                               ",
  "wg0\t00000000\t00000000\t0001\t0\t0\t200\t00000000\t0\t0\t0                                                                                ",
  "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0                                                                             ",
  "eth1\t00000000\t0101A8C0\t0003\t0\t0\t0\t000000FF\t0\t0\t0                                                                                ",
  "",
].join("\n");

const PROC_NET_IPV6_ROUTE = [
  "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0",
  "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0",
  "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe80000000000000022b2cfffe3d4e5f 00000400 00000001 00000000 00000003     eth0",
  "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000001      wg1",
  "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo",
  "00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo",
  "",
].join("\n");

describe("default route interfaces", () => {
  test("IPv4: the interfaces of routes with destination and mask 00000000, header skipped", () => {
    assert.deepEqual(defaultRouteInterfacesV4(PROC_NET_ROUTE), ["eth0", "wg0"]);
  });

  test("IPv4: no default route gives no interface", () => {
    const [header = "", , onlyNet = ""] = PROC_NET_ROUTE.split("\n");
    assert.deepEqual(defaultRouteInterfacesV4(`${header}\n${onlyNet}\n`), []);
    assert.deepEqual(defaultRouteInterfacesV4(""), []);
  });

  test("IPv6: the interfaces of ::/0 routes, lo's unreachable route ignored", () => {
    assert.deepEqual(defaultRouteInterfacesV6(PROC_NET_IPV6_ROUTE), ["eth0", "wg1"]);
  });

  test("IPv6: no default route gives no interface", () => {
    assert.deepEqual(defaultRouteInterfacesV6(PROC_NET_IPV6_ROUTE.split("\n").slice(0, 2).join("\n")), []);
    assert.deepEqual(defaultRouteInterfacesV6(""), []);
  });
});

describe("interface state, as the captures read it before opening one", () => {
  test("lo is there, up, and not Ethernet; a missing name is undefined; any is always there", () => {
    assert.deepEqual(interfaceState("lo"), { index: 1, up: true, linkType: undefined });
    assert.equal(interfaceState("kg-none0"), undefined);
    assert.deepEqual(interfaceState("any"), { index: 0, up: true, linkType: "LINKTYPE_LINUX_SLL" });
  });
});
