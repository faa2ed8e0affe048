import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/config.js";
import { type Config } from "../../src/core/types.js";
import { ConfigError, type ConfigProblem } from "../../src/core/errors.js";

const SSH = { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000" };

/** Runs parseConfig expecting a ConfigError and returns its problems. */
function problemsOf(env: Record<string, string | undefined>): readonly ConfigProblem[] {
  try {
    parseConfig(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail("parseConfig accepted the environment");
}

function messagesFor(problems: readonly ConfigProblem[], variable: string): string[] {
  return problems.filter((p) => p.variable === variable).map((p) => p.message);
}

function onlyDoor(config: Config) {
  assert.equal(config.doors.length, 1);
  const door = config.doors[0];
  assert.ok(door);
  return door;
}

describe("parseConfig", () => {
  test("a door with only a sequence gets the documented defaults", () => {
    const config = parseConfig(SSH);
    const door = onlyDoor(config);
    assert.equal(door.name, "SSH");
    assert.deepEqual(door.ports, [{ port: 22, proto: "tcp" }]);
    assert.equal(door.seqTimeoutMs, 5000);
    assert.equal(door.openForMs, 30000);
    assert.deepEqual(door.tcpFlags, { set: 0x02, clear: 0x10 });
    assert.equal(door.closeSequence, null);
    assert.deepEqual(config.httpAddr, { host: "127.0.0.1", port: 9180 });
    assert.equal(config.firewall, "auto");
    assert.equal(config.onExit, "keep");
    assert.equal(config.maxTracked, 65536);
    assert.equal(config.dryRun, false);
    assert.equal(config.interfaces, null);
    assert.deepEqual(config.allow, []);
    assert.equal(config.reconcileIntervalMs, 2000);
    assert.equal(config.logLevel, "info");
    assert.equal(config.logFormat, "json");
  });

  test("timer values a Node timer cannot hold, and a hook timeout of 0, are problems naming the variable", () => {
    const problems = problemsOf({ ...SSH, KNOCK_RECONCILE_INTERVAL: "2147484", KNOCK_HOOK_TIMEOUT: "2147484" });
    assert.deepEqual(problems, [
      { variable: "KNOCK_RECONCILE_INTERVAL", message: "is more than 2147483 seconds, the longest a timer can wait" },
      { variable: "KNOCK_HOOK_TIMEOUT", message: "is more than 2147483 seconds, the longest a timer can wait" },
    ]);
    assert.deepEqual(messagesFor(problemsOf({ ...SSH, KNOCK_HOOK_TIMEOUT: "0" }), "KNOCK_HOOK_TIMEOUT"), ["must be more than 0 seconds: a hook that hangs must be killed some time"]);
    const longest = parseConfig({ ...SSH, KNOCK_RECONCILE_INTERVAL: "2147483", KNOCK_HOOK_TIMEOUT: "0.001" });
    assert.deepEqual([longest.reconcileIntervalMs, longest.hookTimeoutMs], [2_147_483_000, 1]);
  });

  test("a sequence with a udp knock in the middle is parsed port by port", () => {
    const door = onlyDoor(parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000:udp,9000" }));
    assert.deepEqual(door.sequence, [
      { port: 7000, proto: "tcp" },
      { port: 8000, proto: "udp" },
      { port: 9000, proto: "tcp" },
    ]);
  });

  test("every problem is listed at once", () => {
    const problems = problemsOf({
      KNOCK_DOOR_SSH_SEQUENCE: "7000,70000,9000",
      KNOCK_DOOR_SSH_SEQ_TIMEOUT: "soon",
      KNOCK_FIREWALL: "ufw",
    });
    assert.deepEqual(messagesFor(problems, "KNOCK_DOOR_SSH_SEQUENCE"), ["knock 2 of 3: the port is out of range 1-65535"]);
    assert.deepEqual(messagesFor(problems, "KNOCK_DOOR_SSH_SEQ_TIMEOUT"), ['"soon" is not a number of seconds']);
    assert.equal(messagesFor(problems, "KNOCK_FIREWALL").length, 1);
    assert.equal(problems.length, 3);
  });

  test("the ConfigError message has one VARIABLE: message line per problem", () => {
    assert.throws(
      () => parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "70000", KNOCK_DOOR_SSH_OPEN_FOR: "later" }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.code, "KNOCK_E_CONFIG");
        assert.deepEqual(err.message.split("\n").sort(), [
          'KNOCK_DOOR_SSH_OPEN_FOR: "later" is not a number of seconds',
          "KNOCK_DOOR_SSH_SEQUENCE: knock 1 of 1: the port is out of range 1-65535",
        ]);
        return true;
      },
    );
  });

  test("a misspelt door field is unknown and the right field is suggested", () => {
    const problems = problemsOf({ ...SSH, KNOCK_DOOR_SSH_SEQUENSE: "1,2,3" });
    assert.deepEqual(problems, [
      { variable: "KNOCK_DOOR_SSH_SEQUENSE", message: "unknown variable; did you mean KNOCK_DOOR_SSH_SEQUENCE?" },
    ]);
  });

  test("a misspelt field on a door that has no other variable still gets a suggestion", () => {
    const problems = problemsOf({ KNOCK_DOOR_SSH_SEQUENSE: "7000,8000,9000" });
    assert.deepEqual(messagesFor(problems, "KNOCK_DOOR_SSH_SEQUENSE"), [
      "unknown variable; did you mean KNOCK_DOOR_SSH_SEQUENCE?",
    ]);
  });

  test("a misspelt global variable is unknown and the right one is suggested", () => {
    const problems = problemsOf({ ...SSH, KNOCK_INTERFCE: "eth0" });
    assert.deepEqual(problems, [{ variable: "KNOCK_INTERFCE", message: "unknown variable; did you mean KNOCK_INTERFACE?" }]);
  });

  test("an unknown variable resembling nothing gets no suggestion", () => {
    const problems = problemsOf({ ...SSH, KNOCK_XYZZY_PLUGH: "1" });
    assert.deepEqual(problems, [{ variable: "KNOCK_XYZZY_PLUGH", message: "unknown variable" }]);
  });

  test("variables without the KNOCK_ prefix are ignored", () => {
    const config = parseConfig({ ...SSH, PATH: "/usr/bin", HOME: "/root", KNOCKER: "x", knock_door_x_sequence: "1" });
    assert.equal(onlyDoor(config).name, "SSH");
  });

  test("no door at all is a problem", () => {
    const problems = problemsOf({ KNOCK_FIREWALL: "iptables" });
    assert.deepEqual(problems, [
      {
        variable: "KNOCK_DOOR_<NAME>_SEQUENCE",
        message:
          "no door is configured; set e.g. KNOCK_DOOR_SSH_SEQUENCE=7000,8000,9000, or KNOCK_DOOR_SSH_SPA_KEY and KNOCK_DOOR_SSH_SPA_HMAC_KEY for a signed door",
      },
    ]);
  });

  test("a door field without a SEQUENCE for that door is a problem", () => {
    const problems = problemsOf({ ...SSH, KNOCK_DOOR_WEB_PORTS: "443/tcp" });
    assert.deepEqual(problems, [
      {
        variable: "KNOCK_DOOR_WEB_PORTS",
        message: "door WEB has no KNOCK_DOOR_WEB_SEQUENCE, so this setting belongs to nothing",
      },
    ]);
  });

  test("a close sequence is parsed and a door name may contain underscores", () => {
    const door = onlyDoor(
      parseConfig({ KNOCK_DOOR_MY_SSH_SEQUENCE: "7000,8000,9000", KNOCK_DOOR_MY_SSH_CLOSE_SEQUENCE: "9000,8000:udp,7000" }),
    );
    assert.equal(door.name, "MY_SSH");
    assert.deepEqual(door.sequence.map((p) => p.port), [7000, 8000, 9000]);
    assert.deepEqual(door.closeSequence, [
      { port: 9000, proto: "tcp" },
      { port: 8000, proto: "udp" },
      { port: 7000, proto: "tcp" },
    ]);
  });

  test("PORTS, SEQ_TIMEOUT and OPEN_FOR of a door are read", () => {
    const door = onlyDoor(
      parseConfig({
        ...SSH,
        KNOCK_DOOR_SSH_PORTS: "22/tcp,2222,53/udp,22/tcp",
        KNOCK_DOOR_SSH_SEQ_TIMEOUT: "2.5",
        KNOCK_DOOR_SSH_OPEN_FOR: "600",
      }),
    );
    assert.deepEqual(door.ports, [
      { port: 22, proto: "tcp" },
      { port: 2222, proto: "tcp" },
      { port: 53, proto: "udp" },
    ]);
    assert.equal(door.seqTimeoutMs, 2500);
    assert.equal(door.openForMs, 600_000);
  });

  test("OPEN_FOR beyond what a kernel set timeout holds (2,147,483 s) is a problem; up to it is fine", () => {
    assert.deepEqual(messagesFor(problemsOf({ ...SSH, KNOCK_DOOR_SSH_OPEN_FOR: "2147484" }), "KNOCK_DOOR_SSH_OPEN_FOR"), [
      "is more than 2147483 seconds, the longest timeout a kernel set entry holds",
    ]);
    assert.equal(onlyDoor(parseConfig({ ...SSH, KNOCK_DOOR_SSH_OPEN_FOR: "2147483" })).openForMs, 2_147_483_000);
  });

  test("OPEN_FOR=0 without a close sequence is a problem", () => {
    const problems = problemsOf({ ...SSH, KNOCK_DOOR_SSH_OPEN_FOR: "0" });
    assert.deepEqual(problems, [
      {
        variable: "KNOCK_DOOR_SSH_OPEN_FOR",
        message: '0 means "until the close sequence", but KNOCK_DOOR_SSH_CLOSE_SEQUENCE is not set',
      },
    ]);
  });

  test("OPEN_FOR=0 with a close sequence means open until closed", () => {
    const door = onlyDoor(
      parseConfig({ ...SSH, KNOCK_DOOR_SSH_OPEN_FOR: "0", KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "9000,8000,7000" }),
    );
    assert.equal(door.openForMs, 0);
    assert.equal(door.closeSequence?.length, 3);
  });

  test("OPEN_FOR=0 with an unparsable close sequence reports only the close sequence", () => {
    const problems = problemsOf({ ...SSH, KNOCK_DOOR_SSH_OPEN_FOR: "0", KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "9000,8000,x" });
    assert.deepEqual(problems, [{ variable: "KNOCK_DOOR_SSH_CLOSE_SEQUENCE", message: "knock 3 of 3 is not a port number" }]);
  });

  test("an OPEN_FOR that is not a whole number of seconds is a problem", () => {
    const problems = problemsOf({ ...SSH, KNOCK_DOOR_SSH_OPEN_FOR: "1.5" });
    assert.deepEqual(messagesFor(problems, "KNOCK_DOOR_SSH_OPEN_FOR"), [
      "the kernel expires grants in whole seconds; give a whole number",
    ]);
  });

  test("a SEQ_TIMEOUT of 0 is a problem", () => {
    const problems = problemsOf({ ...SSH, KNOCK_DOOR_SSH_SEQ_TIMEOUT: "0" });
    assert.deepEqual(problems, [{ variable: "KNOCK_DOOR_SSH_SEQ_TIMEOUT", message: "must be more than 0 seconds" }]);
  });

  test("an unparsable SEQ_TIMEOUT or OPEN_FOR is reported once, without follow-on problems", () => {
    const problems = problemsOf({ ...SSH, KNOCK_DOOR_SSH_SEQ_TIMEOUT: "soon", KNOCK_DOOR_SSH_OPEN_FOR: "-1" });
    assert.deepEqual(problems, [
      { variable: "KNOCK_DOOR_SSH_SEQ_TIMEOUT", message: '"soon" is not a number of seconds' },
      { variable: "KNOCK_DOOR_SSH_OPEN_FOR", message: '"-1" is not a number of seconds' },
    ]);
  });

  test("a close sequence equal to the open sequence is a problem", () => {
    const problems = problemsOf({ ...SSH, KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "7000,8000,9000" });
    assert.ok(messagesFor(problems, "KNOCK_DOOR_SSH_CLOSE_SEQUENCE").includes("is the same as the open sequence"));
  });

  test("two doors with the same sequence are a problem", () => {
    const problems = problemsOf({ ...SSH, KNOCK_DOOR_WEB_SEQUENCE: " 7000, 8000 ,9000", KNOCK_DOOR_WEB_PORTS: "443" });
    assert.deepEqual(problems, [
      { variable: "KNOCK_DOOR_WEB_SEQUENCE", message: "is the same sequence as KNOCK_DOOR_SSH_SEQUENCE" },
    ]);
  });

  test("the same ports with a different protocol are a different sequence", () => {
    const config = parseConfig({ ...SSH, KNOCK_DOOR_WEB_SEQUENCE: "7000,8000:udp,9000", KNOCK_DOOR_WEB_PORTS: "443" });
    assert.deepEqual(config.doors.map((d) => d.name).sort(), ["SSH", "WEB"]);
  });

  test("KNOCK_ALLOW takes IPv4 and IPv6 CIDRs and clears host bits", () => {
    const config = parseConfig({ ...SSH, KNOCK_ALLOW: "10.1.2.3/8, fd00::1/64,192.0.2.7,2001:db8::5,128.0.0.0/1" });
    assert.deepEqual(config.allow, [
      { family: 4, text: "10.0.0.0/8" },
      { family: 6, text: "fd00::/64" },
      { family: 4, text: "192.0.2.7/32" },
      { family: 6, text: "2001:db8::5/128" },
      { family: 4, text: "128.0.0.0/1" },
    ]);
  });

  test("KNOCK_ALLOW drops repeats, also those that differ only in host bits", () => {
    const config = parseConfig({ ...SSH, KNOCK_ALLOW: "10.0.0.0/8,10.9.9.9/8,192.0.2.7,192.0.2.7/32" });
    assert.deepEqual(config.allow.map((c) => c.text), ["10.0.0.0/8", "192.0.2.7/32"]);
  });

  test("a /0 in KNOCK_ALLOW is a problem: it would open the doors to everyone", () => {
    const problems = problemsOf({ ...SSH, KNOCK_ALLOW: "0.0.0.0/0,::/0" });
    assert.deepEqual(
      problems.map((p) => p.message),
      ['"0.0.0.0/0": a /0 prefix would let every address past the doors; prefix length must be 1-32'],
    );
  });

  test("a bad CIDR in KNOCK_ALLOW is a problem", () => {
    const problems = problemsOf({ ...SSH, KNOCK_ALLOW: "10.0.0.0/8,10.0.0.300/8" });
    assert.deepEqual(problems, [{ variable: "KNOCK_ALLOW", message: '"10.0.0.300/8" is not an IPv4 or IPv6 address or CIDR' }]);
  });

  test("a prefix longer than the address is a problem", () => {
    const problems = problemsOf({ ...SSH, KNOCK_ALLOW: "10.0.0.0/33" });
    assert.deepEqual(problems, [{ variable: "KNOCK_ALLOW", message: '"10.0.0.0/33": prefix length must be 1-32' }]);
  });

  test("KNOCK_HTTP_ADDR takes a bracketed IPv6 address", () => {
    const config = parseConfig({ ...SSH, KNOCK_HTTP_ADDR: "[::1]:9180" });
    assert.deepEqual(config.httpAddr, { host: "::1", port: 9180 });
  });

  test("a KNOCK_HTTP_ADDR with a host name is a problem", () => {
    const problems = problemsOf({ ...SSH, KNOCK_HTTP_ADDR: "localhost:9180" });
    assert.equal(messagesFor(problems, "KNOCK_HTTP_ADDR").length, 1);
    assert.match(messagesFor(problems, "KNOCK_HTTP_ADDR")[0] ?? "", /^"localhost:9180" is not HOST:PORT/);
  });

  test("a bad KNOCK_FIREWALL lists the allowed values", () => {
    const problems = problemsOf({ ...SSH, KNOCK_FIREWALL: "ufw" });
    assert.deepEqual(problems, [{ variable: "KNOCK_FIREWALL", message: '"ufw" is not one of auto, iptables, nftables' }]);
  });

  test("KNOCK_FIREWALL, KNOCK_ON_EXIT and KNOCK_DRY_RUN are read", () => {
    const config = parseConfig({ ...SSH, KNOCK_FIREWALL: "NFTables", KNOCK_ON_EXIT: "remove", KNOCK_DRY_RUN: "yes" });
    assert.equal(config.firewall, "nftables");
    assert.equal(config.onExit, "remove");
    assert.equal(config.dryRun, true);
  });

  test("KNOCK_INTERFACE is a comma list of interface names", () => {
    const config = parseConfig({ ...SSH, KNOCK_INTERFACE: "eth0, wg0" });
    assert.deepEqual(config.interfaces, ["eth0", "wg0"]);
  });

  test("KNOCK_MAX_TRACKED out of range is a problem", () => {
    const problems = problemsOf({ ...SSH, KNOCK_MAX_TRACKED: "0" });
    assert.deepEqual(problems, [{ variable: "KNOCK_MAX_TRACKED", message: '"0" is not a whole number in 1-10000000' }]);
  });

  test("a door name longer than 19 characters is a problem", () => {
    const name = "A_VERY_LONG_DOOR_NAM"; // 20 characters
    const problems = problemsOf({ [`KNOCK_DOOR_${name}_SEQUENCE`]: "7000,8000,9000" });
    assert.deepEqual(problems, [
      { variable: `KNOCK_DOOR_${name}_SEQUENCE`, message: `door name ${name} is longer than 19 characters` },
    ]);
  });

  test("a door name of exactly 19 characters is accepted", () => {
    const name = "A_VERY_LONG_DOOR_NA";
    assert.equal(onlyDoor(parseConfig({ [`KNOCK_DOOR_${name}_SEQUENCE`]: "7000" })).name, name);
  });

  test("TCPFLAGS syn,!ack requires SYN and forbids ACK", () => {
    const door = onlyDoor(parseConfig({ ...SSH, KNOCK_DOOR_SSH_TCPFLAGS: "syn,!ack" }));
    assert.deepEqual(door.tcpFlags, { set: 0x02, clear: 0x10 });
  });

  test("TCPFLAGS with an unknown flag is a problem", () => {
    const problems = problemsOf({ ...SSH, KNOCK_DOOR_SSH_TCPFLAGS: "bogus" });
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.variable, "KNOCK_DOOR_SSH_TCPFLAGS");
    assert.match(problems[0]?.message ?? "", /^"bogus" is not a TCP flag/);
  });

  test("TCPFLAGS refuses the names of Object's inherited properties instead of checking no flag", () => {
    for (const flags of ["constructor", "toString", "__proto__", "hasOwnProperty", "!constructor", "syn,valueOf"]) {
      const item = flags.split(",").at(-1)?.toLowerCase(); // flags are case-insensitive: the message quotes them lower-cased
      assert.deepEqual(
        problemsOf({ ...SSH, KNOCK_DOOR_SSH_TCPFLAGS: flags }),
        [{ variable: "KNOCK_DOOR_SSH_TCPFLAGS", message: `"${item}" is not a TCP flag; use fin, syn, rst, psh, ack, urg, each optionally with "!"` }],
        `TCPFLAGS=${flags}`,
      );
    }
  });

  test("TCPFLAGS any disables the flag check", () => {
    const door = onlyDoor(parseConfig({ ...SSH, KNOCK_DOOR_SSH_TCPFLAGS: "any" }));
    assert.deepEqual(door.tcpFlags, { set: 0, clear: 0 });
  });

  test("a flag both required and forbidden is a problem", () => {
    const problems = problemsOf({ ...SSH, KNOCK_DOOR_SSH_TCPFLAGS: "syn,!syn" });
    assert.deepEqual(problems, [{ variable: "KNOCK_DOOR_SSH_TCPFLAGS", message: "flag syn is both required and forbidden" }]);
  });

  test("an empty SEQUENCE is a problem", () => {
    const problems = problemsOf({ KNOCK_DOOR_SSH_SEQUENCE: " " });
    assert.deepEqual(problems, [
      { variable: "KNOCK_DOOR_SSH_SEQUENCE", message: "is a required variable, but its value was empty" },
    ]);
  });

  test("a knock protocol other than tcp or udp is a problem", () => {
    const problems = problemsOf({ KNOCK_DOOR_SSH_SEQUENCE: "7000:icmp" });
    assert.deepEqual(problems, [{ variable: "KNOCK_DOOR_SSH_SEQUENCE", message: "knock 1 of 1: the protocol is not tcp or udp" }]);
  });
});

test("a door name ending in _CLOSE is explained, since its SEQUENCE reads as another door's close sequence", () => {
  const err = (() => {
    try {
      parseConfig({ KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "7000,8000" });
    } catch (e) {
      return e as ConfigError;
    }
    throw new Error("expected a ConfigError");
  })();
  assert.deepEqual(err.problems, [
    {
      variable: "KNOCK_DOOR_SSH_CLOSE_SEQUENCE",
      message:
        "door SSH has no KNOCK_DOOR_SSH_SEQUENCE, so this setting belongs to nothing (a door name cannot end in _CLOSE: this is door SSH's close sequence)",
    },
  ]);
});

test("a hook that names no program, or whose words cannot be split, is a configuration problem", () => {
  const problems = problemsOf({ ...SSH, KNOCK_DOOR_SSH_ON_OPEN: '""', KNOCK_DOOR_SSH_ON_CLOSE: "'/bin/echo unterminated" });
  assert.match(messagesFor(problems, "KNOCK_DOOR_SSH_ON_OPEN")[0] ?? "", /names no program/);
  assert.equal(messagesFor(problems, "KNOCK_DOOR_SSH_ON_CLOSE").length, 1);
  assert.equal(messagesFor(problems, "KNOCK_DOOR_SSH_ON_OPEN").length, 1);
});

test("a hook program cannot come from a placeholder: the knocker's address never picks what runs", () => {
  const problems = problemsOf({ ...SSH, KNOCK_DOOR_SSH_ON_OPEN: "%IP% --flag" });
  assert.match(messagesFor(problems, "KNOCK_DOOR_SSH_ON_OPEN")[0] ?? "", /placeholder/);
  assert.deepEqual(onlyDoor(parseConfig({ ...SSH, KNOCK_DOOR_SSH_ON_OPEN: "/bin/notify %DOOR% %IP%" })).onOpen, ["/bin/notify", "%DOOR%", "%IP%"]);
});

test("KNOCK_HOOK_CONCURRENCY defaults to 4 and takes 1-256", () => {
  assert.equal(parseConfig(SSH).hookConcurrency, 4);
  assert.equal(parseConfig({ ...SSH, KNOCK_HOOK_CONCURRENCY: "1" }).hookConcurrency, 1);
  assert.match(messagesFor(problemsOf({ ...SSH, KNOCK_HOOK_CONCURRENCY: "0" }), "KNOCK_HOOK_CONCURRENCY")[0] ?? "", /1-256/);
});

test("per-prefix tracking: KNOCK_MAX_TRACKED_PER_PREFIX and the prefix lengths, with their defaults and ranges", () => {
  const config = parseConfig(SSH);
  assert.equal(config.maxTrackedPerPrefix, 1024);
  assert.deepEqual(config.sourcePrefixes, { v4: 24, v6: 64 });
  assert.deepEqual(parseConfig({ ...SSH, KNOCK_SOURCE_PREFIX_V4: "32", KNOCK_SOURCE_PREFIX_V6: "48" }).sourcePrefixes, { v4: 32, v6: 48 });
  const problems = problemsOf({ ...SSH, KNOCK_SOURCE_PREFIX_V4: "33", KNOCK_SOURCE_PREFIX_V6: "8", KNOCK_MAX_TRACKED_PER_PREFIX: "0" });
  assert.deepEqual(
    problems.map((p) => p.variable),
    ["KNOCK_MAX_TRACKED_PER_PREFIX", "KNOCK_SOURCE_PREFIX_V4", "KNOCK_SOURCE_PREFIX_V6"],
  );
});

describe("secrets from files (<VARIABLE>_FILE)", () => {
  const files: Record<string, string> = {
    "/run/secrets/seq": "7000,8000,9000\n",
    "/run/secrets/close": "9000,8000,7000",
    "/run/secrets/empty": " \n",
    "/run/secrets/bad": "7000,99999,9000\n",
    "/run/secrets/token": "s3cret-token\n",
  };
  const readFile = (path: string): string => {
    const text = files[path];
    if (text === undefined) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: "ENOENT" });
    return text;
  };
  const problemsWith = (env: Record<string, string>): readonly ConfigProblem[] => {
    try {
      parseConfig(env, readFile);
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems;
    }
    assert.fail("accepted");
  };

  test("a door's sequences can come from files, with the trailing newline dropped, and the files are remembered", () => {
    const config = parseConfig({ KNOCK_DOOR_SSH_SEQUENCE_FILE: "/run/secrets/seq", KNOCK_DOOR_SSH_CLOSE_SEQUENCE_FILE: "/run/secrets/close" }, readFile);
    const door = onlyDoor(config);
    assert.deepEqual(door.sequence.map((p) => p.port), [7000, 8000, 9000]);
    assert.deepEqual(door.closeSequence?.map((p) => p.port), [9000, 8000, 7000]);
    assert.deepEqual(config.secretFiles, { KNOCK_DOOR_SSH_SEQUENCE: "/run/secrets/seq", KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "/run/secrets/close" });
  });

  test("both forms at once, an unreadable file and an empty file are problems naming the file", () => {
    assert.deepEqual(problemsWith({ KNOCK_DOOR_SSH_SEQUENCE: "1,2,3", KNOCK_DOOR_SSH_SEQUENCE_FILE: "/run/secrets/seq" }), [
      { variable: "KNOCK_DOOR_SSH_SEQUENCE_FILE", message: "KNOCK_DOOR_SSH_SEQUENCE is set too; give the secret one way, not both" },
    ]);
    assert.deepEqual(
      problemsWith({ ...SSH, KNOCK_DOOR_SSH_CLOSE_SEQUENCE_FILE: "/run/secrets/missing" }),
      [{ variable: "KNOCK_DOOR_SSH_CLOSE_SEQUENCE_FILE", message: "cannot read /run/secrets/missing (ENOENT)" }],
    );
    assert.deepEqual(
      problemsWith({ ...SSH, KNOCK_DOOR_SSH_CLOSE_SEQUENCE_FILE: "/run/secrets/empty" }),
      [{ variable: "KNOCK_DOOR_SSH_CLOSE_SEQUENCE_FILE", message: "/run/secrets/empty is empty" }],
    );
  });

  test("a bad sequence from a file is reported under the _FILE variable, with the path and without the value", () => {
    const problems = problemsWith({ KNOCK_DOOR_SSH_SEQUENCE_FILE: "/run/secrets/bad" });
    assert.deepEqual(problems, [{ variable: "KNOCK_DOOR_SSH_SEQUENCE_FILE", message: "/run/secrets/bad: knock 2 of 3: the port is out of range 1-65535" }]);
    assert.doesNotMatch(JSON.stringify(problems), /99999|7000|9000/);
  });

  test("the metrics token is read from a file only", () => {
    assert.equal(parseConfig({ ...SSH, KNOCK_METRICS_TOKEN_FILE: "/run/secrets/token" }, readFile).metricsToken, "s3cret-token");
    assert.equal(parseConfig(SSH, readFile).metricsToken, null);
    const problems = problemsWith({ ...SSH, KNOCK_METRICS_TOKEN: "in-the-environment" });
    assert.deepEqual(
      problems.map((p) => p.variable),
      ["KNOCK_METRICS_TOKEN"],
    );
    assert.match(problems[0]?.message ?? "", /KNOCK_METRICS_TOKEN_FILE/);
  });

  test("_FILE is only for secrets: another setting with it is an unknown variable", () => {
    assert.match(messagesFor(problemsWith({ ...SSH, KNOCK_LOG_LEVEL_FILE: "/run/secrets/seq" }), "KNOCK_LOG_LEVEL_FILE")[0] ?? "", /unknown variable/);
  });
});

test("grant bounds: KNOCK_MAX_GRANTS and KNOCK_MAX_GRANTS_PER_PREFIX, with their defaults", () => {
  const config = parseConfig(SSH);
  assert.deepEqual([config.maxGrants, config.maxGrantsPerPrefix], [65536, 256]);
  assert.deepEqual(
    problemsOf({ ...SSH, KNOCK_MAX_GRANTS: "0", KNOCK_MAX_GRANTS_PER_PREFIX: "x" }).map((p) => p.variable),
    ["KNOCK_MAX_GRANTS", "KNOCK_MAX_GRANTS_PER_PREFIX"],
  );
});
