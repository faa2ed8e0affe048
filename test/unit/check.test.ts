import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ShimmedCli } from "../support/cli-run.js";
import { checkReport, reportText, summarize, type HostProbe } from "../../src/cli/check.js";
import { parseConfig } from "../../src/config/config.js";
import { FirewallError } from "../../src/core/errors.js";
import { conflictText, decideDoors, effectiveDoors } from "../../src/core/docker/desired.js";
import { labelledContainer } from "../support/containers.js";

const cli = new ShimmedCli();
after(() => cli.remove());

// Ports that occur nowhere else in the output, so finding one means the sequence leaked.
const SECRET_PORTS = ["7123", "8234", "9345", "6456"];
const VALID = {
  KNOCK_DOOR_SSH_SEQUENCE: "7123,8234:udp,9345",
  KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "9345,6456",
  KNOCK_DOOR_SSH_PORTS: "2222/tcp",
  KNOCK_DOOR_SSH_OPEN_FOR: "60",
  KNOCK_DOOR_SSH_ON_OPEN: "logger opened %IP%",
  KNOCK_INTERFACE: "lo",
  KNOCK_ALLOW: "198.18.0.0/24",
};

/** Every firewall command `check` may run only reads (the iptables variant detection). */
function assertOnlyReads(calls: readonly string[]): void {
  for (const call of calls) assert.match(call, /^ip6?tables-(nft|legacy)-save $/, `check ran a command that is not a read: ${call}`);
}

describe("knockgate check", () => {
  test("a valid environment: exit 0 and the effective configuration, defaults marked, no sequence port shown", () => {
    const r = cli.run(["check"], VALID);
    assert.equal(r.stderr, "");
    assert.equal(r.status, 0);
    assertOnlyReads(r.calls);
    for (const port of SECRET_PORTS) assert.doesNotMatch(r.stdout, new RegExp(`\\b${port}\\b`), `sequence port ${port} leaked`);
    const lines = r.stdout.split("\n").map((l) => l.trim());
    assert.equal(lines[0], "the configuration from the environment is valid");
    const { fingerprint } = summarize([
      { port: 7123, proto: "tcp" },
      { port: 8234, proto: "udp" },
      { port: 9345, proto: "tcp" },
    ]);
    for (const line of [
      "door SSH",
      `KNOCK_DOOR_SSH_SEQUENCE: 3 knocks, fingerprint ${fingerprint}`,
      "KNOCK_DOOR_SSH_PORTS=2222/tcp",
      "KNOCK_DOOR_SSH_SEQ_TIMEOUT=5 (default)",
      "KNOCK_DOOR_SSH_OPEN_FOR=60",
      "KNOCK_DOOR_SSH_TCPFLAGS=syn,!ack (default)",
      "KNOCK_DOOR_SSH_ON_OPEN: set",
      "KNOCK_DOOR_SSH_ON_CLOSE: not set",
      "KNOCK_INTERFACE=lo",
      "KNOCK_ALLOW=198.18.0.0/24",
      "KNOCK_HTTP_ADDR=127.0.0.1:9180 (default)",
      "KNOCK_FIREWALL=auto (default: iptables with ipset, nf_tables variant, on this host)",
      "KNOCK_ON_EXIT=keep (default)",
      "KNOCK_RECONCILE_INTERVAL=2 (default)",
      "KNOCK_LOG_FORMAT=json (default)",
    ]) {
      assert.ok(lines.includes(line), `no line "${line}" in:\n${r.stdout}`);
    }
    assert.match(r.stdout, /KNOCK_DOOR_SSH_CLOSE_SEQUENCE: 2 knocks, fingerprint [0-9a-f]{8}\n/);
    assert.doesNotMatch(r.stdout, /logger/, "a hook's command line may hold a secret");
  });

  test("with the kernel engine: what each sequence compiles to, by name and size, and still no sequence port", () => {
    const r = cli.run(["check"], { ...VALID, KNOCK_ENGINE: "kernel", KNOCK_MAX_TRACKED: "5000" });
    assert.equal(r.status, 0, r.stderr);
    for (const port of SECRET_PORTS) assert.doesNotMatch(r.stdout, new RegExp(`\\b${port}\\b`), `sequence port ${port} leaked`);
    assert.match(
      r.stdout,
      /\n {2}kernel rules of the open sequence: chains knock_SSH_open_v4 and knock_SSH_open_v6, 7 rules each; sets _first, _s1, _s2, _recent, _unread of each, at most 5000 sources each; a completion is reported on NFLOG group 19271; the source goes into door_SSH_v4 and door_SSH_v6 for 60 s\n/,
    );
    assert.match(r.stdout, /\n {2}kernel rules of the close sequence: chains knock_SSH_close_v4 and knock_SSH_close_v6, 5 rules each; sets _first, _s1, _recent of each, [^\n]*the source leaves door_SSH_v4 and door_SSH_v6\n/);
    const json = JSON.parse(cli.run(["check", "--json"], { ...VALID, KNOCK_ENGINE: "kernel" }).stdout) as { doors: { kernel: { sequence: string; rules: number }[] }[] };
    assert.deepEqual(json.doors[0]?.kernel.map((k) => [k.sequence, k.rules]), [["open", 7], ["close", 5]]);
    assert.doesNotMatch(cli.run(["check"], VALID).stdout, /kernel rules/, "the capture engine compiles nothing");
  });

  test("an invalid environment: exit 78, every problem in the daemon's format, nothing run", () => {
    const r = cli.run(["check"], { KNOCK_DOOR_SSH_SEQUENCE: "7123,99999", KNOCK_DOOR_SSH_OPEN_FOR: "soon", KNOCK_FIREWAL: "nftables" });
    assert.equal(r.status, 78);
    assert.equal(r.stdout, "");
    assert.deepEqual(r.calls, []);
    assert.equal(
      r.stderr,
      "knockgate check: the configuration from the environment is invalid:\n" +
        "  KNOCK_FIREWAL: unknown variable; did you mean KNOCK_FIREWALL?\n" +
        "  KNOCK_DOOR_SSH_SEQUENCE: knock 2 of 2: the port is out of range 1-65535\n" +
        '  KNOCK_DOOR_SSH_OPEN_FOR: "soon" is not a number of seconds\n',
    );
  });

  test("values that parse but cannot work are exit 78 too, each naming its variable", () => {
    const r = cli.run(["check"], { ...VALID, KNOCK_RECONCILE_INTERVAL: "2147484", KNOCK_HOOK_TIMEOUT: "0", KNOCK_DOOR_SSH_OPEN_FOR: "2147484" });
    assert.equal(r.status, 78);
    for (const variable of ["KNOCK_RECONCILE_INTERVAL", "KNOCK_HOOK_TIMEOUT", "KNOCK_DOOR_SSH_OPEN_FOR"]) assert.match(r.stderr, new RegExp(`\n  ${variable}: `));
  });

  test("--config reads the variables from the file, not the environment", () => {
    const file = cli.file("knockgate.env", Object.entries(VALID).map(([k, v]) => `${k}="${v}"\n`).join("") + "# a comment\n");
    const r = cli.run(["check", "--config", file], { KNOCK_BOGUS: "ignored" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^the configuration from ${file} is valid\n`));
    assertOnlyReads(r.calls);
  });

  test("an unreadable --config file is exit 78 naming the file", () => {
    const r = cli.run(["check", "--config", "/nonexistent/knockgate.env"], VALID);
    assert.equal(r.status, 78);
    assert.equal(r.stderr, "knockgate check: cannot read /nonexistent/knockgate.env: no such file or directory\n");
    assert.deepEqual(r.calls, []);
  });

  test("lines of the --env-file that are not KEY=VALUE are problems beside the configuration's, by line number only", () => {
    const text = `KNOCK_DOOR_SSH_SEQUENCE=7123,8234\nKNOCK_INTERFACE lo\nKNOCK_DOOR_SSH_OPEN_FOR=soon\n# fine\nKNOCK_ALLOW: 198.18.0.0/24\n`;
    const file = cli.file("broken.env", text);
    const r = cli.run(["check", "--env-file", file], {});
    assert.equal(r.status, 78);
    assert.equal(
      r.stderr,
      `knockgate check: the configuration from ${file} is invalid:\n` +
        `  ${file}:2: not a KEY=VALUE line (a name of letters, digits and _, then =); the line is not shown, it may hold a secret\n` +
        `  ${file}:5: not a KEY=VALUE line (a name of letters, digits and _, then =); the line is not shown, it may hold a secret\n` +
        '  KNOCK_DOOR_SSH_OPEN_FOR: "soon" is not a number of seconds\n',
    );
    const json = cli.run(["check", "--json", "--env-file", file], {});
    assert.equal(json.status, 78);
    const out = JSON.parse(json.stdout) as { valid: boolean; problems: { variable: string }[] };
    assert.deepEqual(out.problems.map((p) => p.variable), [`${file}:2`, `${file}:5`, "KNOCK_DOOR_SSH_OPEN_FOR"]);
    // A file whose configuration is otherwise valid is still refused.
    const onlyLine = cli.file("one-bad-line.env", Object.entries(VALID).map(([k, v]) => `${k}=${v}\n`).join("") + "oops\n");
    const invalid = cli.run(["check", "--config", onlyLine], {});
    assert.equal(invalid.status, 78);
    assert.match(invalid.stderr, /one-bad-line\.env:8: not a KEY=VALUE line/);
    assert.equal(invalid.stdout, "");
  });

  test("--env-file is the same as --config; both at once is a usage error", () => {
    const file = cli.file("knockgate-env-file.env", Object.entries(VALID).map(([k, v]) => `${k}=${v}\n`).join(""));
    const r = cli.run(["check", "--env-file", file], {});
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^the configuration from ${file} is valid\n`));
    const both = cli.run(["check", "--env-file", file, "--config", file], {});
    assert.equal(both.status, 64);
    assert.match(both.stderr, /--env-file or --config, not both/);
    assert.deepEqual(both.calls, []);
  });

  test("a sequence from a _FILE secret shows its file, never its ports", () => {
    const seq = cli.file("seq.secret", "7123,8234:udp,9345\n");
    const env: Record<string, string> = { ...VALID, KNOCK_DOOR_SSH_SEQUENCE_FILE: seq };
    delete env["KNOCK_DOOR_SSH_SEQUENCE"];
    const r = cli.run(["check"], env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`KNOCK_DOOR_SSH_SEQUENCE: 3 knocks, fingerprint [0-9a-f]{8} <from file ${seq}>\n`));
    for (const port of SECRET_PORTS) assert.doesNotMatch(r.stdout, new RegExp(`\\b${port}\\b`), `sequence port ${port} leaked`);
  });

  test("--json gives the same report, machine-readable", () => {
    const r = cli.run(["check", "--json"], { ...VALID, KNOCK_DRY_RUN: "yes" });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.calls, [], "a dry run needs no backend detection");
    const report = JSON.parse(r.stdout) as { valid: boolean; doors: { name: string; sequence: { knocks: number } }[]; settings: { variable: string; value: string; default: boolean; note?: string }[] };
    assert.equal(report.valid, true);
    assert.deepEqual(report.doors.map((d) => [d.name, d.sequence.knocks]), [["SSH", 3]]);
    assert.deepEqual(report.settings.find((s) => s.variable === "KNOCK_DRY_RUN"), { variable: "KNOCK_DRY_RUN", value: "true", default: false });
    assert.equal(report.settings.find((s) => s.variable === "KNOCK_FIREWALL")?.note, "dry run: the iptables plan is logged, the firewall is not touched", "auto, with the iptables and ipset shims on PATH");
    for (const port of SECRET_PORTS) assert.doesNotMatch(r.stdout, new RegExp(`\\b${port}\\b`));
  });

  test("--json on an invalid environment lists the problems, exit 78", () => {
    const r = cli.run(["check", "--json"], {});
    assert.equal(r.status, 78);
    const report = JSON.parse(r.stdout) as { valid: boolean; problems: { variable: string }[] };
    assert.equal(report.valid, false);
    assert.deepEqual(report.problems.map((p) => p.variable), ["KNOCK_DOOR_<NAME>_SEQUENCE"]);
  });
});

describe("check report", () => {
  const host = (interfaces: string[], backend: HostProbe["chooseBackend"]): HostProbe => ({ defaultInterfaces: () => Promise.resolve(interfaces), chooseBackend: backend });
  const nftables: HostProbe["chooseBackend"] = () => Promise.resolve({ backend: "nftables" });

  test("without KNOCK_INTERFACE it names the default-route interfaces it would watch, as such", async () => {
    const env = { KNOCK_DOOR_SSH_SEQUENCE: "7123,8234" };
    const text = reportText(await checkReport(parseConfig(env), env, "the environment", host(["eth0", "wg0"], nftables)));
    assert.match(text, /\n {2}KNOCK_INTERFACE=eth0,wg0 \(default: the interfaces of this host's default routes\)\n/);
    assert.doesNotMatch(text, /warning/);
    const kernel = { ...env, KNOCK_ENGINE: "kernel" };
    const kernelText = reportText(await checkReport(parseConfig(kernel), kernel, "the environment", host(["eth0"], nftables)));
    assert.match(kernelText, /\n {2}KNOCK_INTERFACE=eth0 \(default: the interfaces of this host's default routes, for signed datagrams; the kernel engine's rules take knocks on every interface but loopback\)\n/);
  });

  test("a host without a default route or without the backend's tools gets a warning, not a refusal", async () => {
    const env = { KNOCK_DOOR_SSH_SEQUENCE: "7123,8234", KNOCK_FIREWALL: "nftables" };
    const missing = () => Promise.reject(new FirewallError("KNOCK_FIREWALL=nftables needs nft on PATH", [], ""));
    const report = await checkReport(parseConfig(env), env, "the environment", host([], missing));
    assert.deepEqual(report.warnings, [
      "knockgate run would refuse to start here: no default route, so no interface to watch: set KNOCK_INTERFACE",
      "knockgate run would fail here: KNOCK_FIREWALL=nftables needs nft on PATH",
    ]);
    assert.match(reportText(report), /\n {2}KNOCK_FIREWALL=nftables \(none usable on this host\)\n/);
  });

  test("a label claiming a port another door owns is a warning naming the container, the door, the port and the owner", async () => {
    const env = { KNOCK_DOOR_SSH_SEQUENCE: "7123,8234", KNOCK_DOOR_SSH_PORTS: "2222/tcp", KNOCK_DOOR_WEB_SEQUENCE: "7124,8235", KNOCK_DOOR_WEB_PORTS: "none", KNOCK_INTERFACE: "lo" };
    const config = parseConfig(env);
    const claimant = [labelledContainer("claimant", "WEB", ["2222"])];
    const decided = decideDoors(config.doors, claimant);
    const docker: HostProbe["dockerDoors"] = () =>
      Promise.resolve({ effective: effectiveDoors(config.doors, decided, claimant), conflicts: decided.conflicts.map(conflictText), state: "following unix:///var/run/docker.sock: 1 labelled container(s)" });
    const report = await checkReport(config, env, "the environment", { ...host(["lo"], nftables), dockerDoors: docker });
    const warning = "label conflict: container claimant (636c61696d61) claims 2222/tcp for door WEB, which door SSH owns (env): refused";
    assert.deepEqual(report.warnings, [warning]);
    const text = reportText(report);
    assert.ok(text.includes(`\nwarning: ${warning}\n`), text);
    assert.deepEqual(report.doors.map((d) => [d.name, d.ports]), [["SSH", [{ port: "2222/tcp", from: ["env"] }]], ["WEB", []]], "the owner keeps the port, the claimant gets nothing");
  });

  test("a fingerprint depends on the sequence, not on how it is written", () => {
    const of = (value: string) => summarize(parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: value }).doors[0]?.sequence ?? []).fingerprint;
    assert.equal(of("7123,8234,9345"), of("7123:tcp, 8234:TCP ,9345"));
    assert.notEqual(of("7123,8234,9345"), of("7123,8234:udp,9345"));
    assert.notEqual(of("7123,8234,9345"), of("9345,8234,7123"));
  });
});
