/**
 * `knockgate convert` on fwknopd access.conf files: each SOURCE stanza a signed door, everything
 * else listed with its line. The files are written as Debian's fwknop-server ships and documents
 * them (/etc/fwknop/access.conf).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { runConvert } from "../../src/cli/convert/command.js";
import { isAccessConf, parseAccessConf } from "../../src/cli/convert/access-conf.js";
import { convertAccessConf } from "../../src/cli/convert/access-to-env.js";
import { parseEnvFile } from "../../src/config/env-file.js";
import { parseConfig } from "../../src/config/config.js";

const KEY = "x3Hm4XvHIiGziVKV+qtD/DzEv19BFqDytmwBUgNOG/4=";
const HMAC = "l5z+ZZVZPtim7VQfYuGS8p+8zdD/3e6YCOFKO4enjs332ze+A3h/SvpEsjP3VB6G0F+HUKd4HZ9vVOIRnY4Eng==";

/** Debian's shipped file, comments cut short: one stanza with the placeholders fwknopd refuses. */
const DEBIAN_SHIPPED = `##############################################################################
#
# File:    access.conf
#
##############################################################################
#
### Directives ###

# %include /etc/fwknop/myInlcudeFile.conf

# SOURCE                <IP,..,IP/NET,..,NET/ANY>
SOURCE              ANY
KEY_BASE64          __CHANGEME__
HMAC_KEY_BASE64     __CHANGEME__
`;

/** The fwknop tutorial's server setup: keys from fwknop --key-gen pasted in, ssh only. */
const TUTORIAL = `# access.conf
SOURCE                  ANY
OPEN_PORTS              tcp/22
KEY_BASE64              ${KEY}
HMAC_KEY_BASE64         ${HMAC}
FW_ACCESS_TIMEOUT       60
REQUIRE_SOURCE_ADDRESS  Y
`;

const vars = (env: string): Record<string, string> => parseEnvFile(env, "converted").env;
const convert = (text: string) => convertAccessConf(parseAccessConf(text));

function run(text: string, args: string[] = ["access.conf"]) {
  let stdout = "";
  let stderr = "";
  const code = runConvert(args, {
    readFile: () => text,
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
  });
  return { code, stdout, stderr, errLines: stderr.split("\n").filter(Boolean) };
}

describe("telling access.conf from knockd.conf", () => {
  test("a SOURCE line without [sections] is an access.conf; knockd.conf has sections", () => {
    assert.equal(isAccessConf(TUTORIAL), true);
    assert.equal(isAccessConf(DEBIAN_SHIPPED), true);
    assert.equal(isAccessConf("[options]\n\tUseSyslog\n[openSSH]\n\tsequence = 7000,8000,9000\n"), false);
    assert.equal(isAccessConf("# SOURCE ANY\n"), false);
  });

  test("knockgate convert picks the converter by content", () => {
    const fwknop = run(TUTORIAL);
    assert.equal(fwknop.code, 0, fwknop.stderr);
    assert.match(fwknop.stdout, /^KNOCK_DOOR_FWKNOP_SPA_KEY=/m);
    const knockd = run("[openSSH]\n\tsequence = 7000,8000,9000\n\tcommand = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n");
    assert.match(knockd.stdout, /^KNOCK_DOOR_OPENSSH_SEQUENCE=7000,8000,9000$/m);
  });
});

describe("parseAccessConf", () => {
  test("reads fwknopd's syntax: first word, value up to ';', trailing ':' on the name, '#' and ';' lines skipped", () => {
    const conf = parseAccessConf("OPEN_PORTS tcp/1\r\n;comment\nSOURCE: ANY\r\nOPEN_PORTS:\t tcp/22, udp/53 ; trailing\n# c\n\nKEY  two words \n");
    assert.deepEqual(conf.outside, [{ key: "OPEN_PORTS", value: "tcp/1", line: 1 }]);
    assert.equal(conf.stanzas.length, 1);
    assert.deepEqual(conf.stanzas[0]!.source, { key: "SOURCE", value: "ANY", line: 3 });
    assert.deepEqual(conf.stanzas[0]!.entries, [
      { key: "OPEN_PORTS", value: "tcp/22, udp/53 ", line: 4 },
      { key: "KEY", value: "two words ", line: 7 },
    ]);
  });
});

describe("convertAccessConf", () => {
  test("the tutorial's stanza becomes one signed door with nothing left out", () => {
    const r = convert(TUTORIAL);
    assert.deepEqual(r.problems, []);
    assert.deepEqual(vars(r.env), {
      KNOCK_DOOR_FWKNOP_SPA_KEY: KEY,
      KNOCK_DOOR_FWKNOP_SPA_HMAC_KEY: HMAC,
      KNOCK_DOOR_FWKNOP_PORTS: "22/tcp",
      KNOCK_DOOR_FWKNOP_OPEN_FOR: "60",
      KNOCK_DOOR_FWKNOP_SPA_MAX_OPEN_FOR: "300",
      KNOCK_DOOR_FWKNOP_SPA_REQUIRE_SOURCE_ADDRESS: "true",
    });
    assert.ok(r.notes.some((n) => n.line === 0 && /fwknopd\.conf is not read.*_SPA_PORT/.test(n.message)), JSON.stringify(r.notes));
    // Every variable says where it came from.
    assert.match(r.env, /# from line 3: OPEN_PORTS\nKNOCK_DOOR_FWKNOP_PORTS=22\/tcp/);
    assert.match(r.env, /# the stanza sets no MAX_FW_TIMEOUT: fwknopd's default is 300 s\nKNOCK_DOOR_FWKNOP_SPA_MAX_OPEN_FOR=300/);
  });

  test("Debian's shipped file: the placeholders are refused with their lines, as fwknopd refuses them", () => {
    const r = run(DEBIAN_SHIPPED);
    assert.equal(r.code, 1);
    assert.doesNotMatch(r.stdout, /^KNOCK_DOOR_/m);
    assert.ok(r.errLines.some((l) => /^access\.conf:13: KEY_BASE64 is still __CHANGEME__/.test(l)), r.stderr);
    assert.ok(r.errLines.some((l) => /^access\.conf:14: HMAC_KEY_BASE64 is still __CHANGEME__/.test(l)), r.stderr);
    assert.equal(run(DEBIAN_SHIPPED, ["--force", "access.conf"]).code, 0);
  });

  test("every setting of a stanza that maps: digest, both timeouts, username, ports less RESTRICT_PORTS", () => {
    const r = convert(`SOURCE ANY
DESTINATION ANY
OPEN_PORTS tcp/22,tcp/2222,udp/1194
RESTRICT_PORTS tcp/2222
KEY_BASE64 ${KEY}
HMAC_KEY_BASE64 ${HMAC}
HMAC_DIGEST_TYPE SHA512
FW_ACCESS_TIMEOUT 45
MAX_FW_TIMEOUT 600
REQUIRE_SOURCE_ADDRESS N
REQUIRE_USERNAME alice
ENABLE_CMD_EXEC N
`);
    assert.deepEqual(r.problems, []);
    const env = vars(r.env);
    assert.deepEqual(
      [env["KNOCK_DOOR_FWKNOP_PORTS"], env["KNOCK_DOOR_FWKNOP_SPA_HMAC_DIGEST"], env["KNOCK_DOOR_FWKNOP_OPEN_FOR"], env["KNOCK_DOOR_FWKNOP_SPA_MAX_OPEN_FOR"]],
      ["1194/udp,22/tcp", "sha512", "45", "600"],
    );
    assert.equal(env["KNOCK_DOOR_FWKNOP_SPA_REQUIRE_USERNAME"], "alice");
    assert.equal(env["KNOCK_DOOR_FWKNOP_SPA_REQUIRE_SOURCE_ADDRESS"], "false");
    assert.ok(r.warnings.some((n) => n.line === 10 && /KNOCK_DOOR_FWKNOP_SPA_REQUIRE_SOURCE_ADDRESS=false.*KNOCK_CLUSTER=kubernetes refuses/.test(n.message)), JSON.stringify(r.warnings));
  });

  test("a passphrase KEY becomes the base64 of its bytes, noted; fwknopd's defaults are written out", () => {
    const r = convert(`SOURCE ANY\nOPEN_PORTS tcp/22\nKEY my long pass phrase\nHMAC_KEY_BASE64 ${HMAC}\n`);
    assert.deepEqual(r.problems.map((p) => p.line), []);
    const env = vars(r.env);
    assert.equal(Buffer.from(env["KNOCK_DOOR_FWKNOP_SPA_KEY"]!, "base64").toString(), "my long pass phrase");
    assert.equal(env["KNOCK_DOOR_FWKNOP_OPEN_FOR"], "30");
    assert.equal(env["KNOCK_DOOR_FWKNOP_SPA_REQUIRE_SOURCE_ADDRESS"], "false");
    assert.ok(r.notes.some((n) => n.line === 3 && /passphrase/.test(n.message)));
    // fwknopd's default, written out: said as a warning, at the stanza's SOURCE line.
    assert.ok(r.warnings.some((w) => w.line === 1 && /SPA_REQUIRE_SOURCE_ADDRESS=false, as fwknopd defaults to/.test(w.message)), JSON.stringify(r.warnings));
  });

  test("a stanza that requires the source address gets no warning about it", () => {
    const r = convert(`SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 ${KEY}\nHMAC_KEY_BASE64 ${HMAC}\nREQUIRE_SOURCE_ADDRESS Y\n`);
    assert.deepEqual(r.warnings, []);
  });

  test("what a door cannot express is listed by line, and the door is still written when it works", () => {
    const text = `# two stanzas, most specific first
SOURCE 198.18.0.0/24, 198.18.1.7
OPEN_PORTS tcp/22
KEY_BASE64 ${KEY}
HMAC_KEY_BASE64 ${HMAC}
ENABLE_CMD_EXEC Y
CMD_EXEC_USER nobody
ACCESS_EXPIRE 12/31/2027
FORCE_NAT 192.168.1.10 22
%include_keys /etc/fwknop/keys.conf
GPG_HOME_DIR /root/.gnupg
HMAC_DIGEST_TYPE MD5
NO_SUCH_SETTING 1

SOURCE ANY
KEY_BASE64 ${KEY}
HMAC_KEY_BASE64 ${HMAC}
`;
    const r = run(text);
    assert.equal(r.code, 1);
    const problemLines = (r.errLines.filter((l) => /^access\.conf:\d+: (?!note:|warning:)/.test(l)) ?? []).map((l) => Number(/:(\d+):/.exec(l)![1]));
    assert.deepEqual(problemLines, [2, 6, 8, 9, 10, 12, 15]);
    assert.ok(r.errLines.some((l) => /^access\.conf:2: SOURCE 198\.18\.0\.0\/24, 198\.18\.1\.7 — .*KNOCK_ALLOW/.test(l)), r.stderr);
    assert.ok(r.errLines.some((l) => /^access\.conf:15: the stanza has no OPEN_PORTS/.test(l)), r.stderr);
    assert.ok(r.errLines.some((l) => /^access\.conf:7: note: CMD_EXEC_USER/.test(l)), r.stderr);
    assert.ok(r.errLines.some((l) => /^access\.conf:2: warning: KNOCK_DOOR_FWKNOP_SPA_REQUIRE_SOURCE_ADDRESS=false/.test(l)), r.stderr);
    assert.ok(r.errLines.some((l) => /^access\.conf:13: note: NO_SUCH_SETTING — fwknopd ignores/.test(l)), r.stderr);
    const env = vars(r.stdout);
    // Both stanzas are doors; the second keeps knockgate's default ports.
    assert.equal(env["KNOCK_DOOR_FWKNOP_PORTS"], "22/tcp");
    assert.equal(env["KNOCK_DOOR_FWKNOP_2_SPA_KEY"], KEY);
    assert.equal(env["KNOCK_DOOR_FWKNOP_2_PORTS"], undefined);
    assert.equal(env["KNOCK_DOOR_FWKNOP_SPA_HMAC_DIGEST"], undefined);
    // The env lists the same losses as comments.
    assert.match(r.stdout, /# NOT CONVERTED from access\.conf[^\n]*\n# line 2: SOURCE/);
  });

  test("a stanza without an HMAC key, or in another cipher mode, is not written", () => {
    const r = convert(`SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 ${KEY}\n\nSOURCE ANY\nKEY_BASE64 ${KEY}\nHMAC_KEY_BASE64 ${HMAC}\nENCRYPTION_MODE legacy\n`);
    assert.doesNotMatch(r.env, /^KNOCK_DOOR_/m);
    assert.deepEqual(r.problems.map((p) => p.line), [1, 8]);
    assert.match(r.problems[0]!.message, /no HMAC_KEY_BASE64/);
  });

  test("no SOURCE at all is reported for the whole file", () => {
    const r = run("OPEN_PORTS tcp/22\n");
    assert.equal(isAccessConf("OPEN_PORTS tcp/22\n"), false);
    // Without SOURCE it is read as a knockd.conf, which it is not either: a syntax error.
    assert.equal(r.code, 65);
    assert.deepEqual(convert("OPEN_PORTS tcp/22\n").problems.map((p) => p.line), [0]);
  });
});

describe("converted doors and the daemon's parser", () => {
  test("the tutorial's env is a configuration the daemon accepts, with the stanza's settings", () => {
    const config = parseConfig(parseEnvFile(convert(TUTORIAL).env, "converted").env);
    const door = config.doors.find((d) => d.name === "FWKNOP");
    assert.ok(door?.spa, "a signed door FWKNOP");
    assert.deepEqual(door.ports, [{ port: 22, proto: "tcp" }]);
    assert.equal(door.openForMs, 60_000);
    assert.deepEqual([door.spa.port, door.spa.maxOpenForS, door.spa.requireSourceAddress, door.spa.keys.hmacDigest], [62201, 300, true, "sha256"]);
    assert.equal(Buffer.from(door.spa.keys.encryptionKey).toString("base64"), KEY);
  });

  test("what the daemon would refuse (a passphrase under 16 bytes) is a problem at the stanza's line", () => {
    const r = convert(`\nSOURCE ANY\nOPEN_PORTS tcp/22\nKEY short\nHMAC_KEY_BASE64 ${HMAC}\n`);
    assert.deepEqual(r.problems.map((p) => p.line), [2]);
    assert.match(r.problems[0]!.message, /^KNOCK_DOOR_FWKNOP_SPA_KEY decodes to 5 bytes.* — knockgate refuses this door as converted$/);
    assert.ok(!r.problems[0]!.message.includes("short"), "the key never shows");
  });
});
