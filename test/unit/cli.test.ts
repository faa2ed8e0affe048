import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ShimmedCli } from "../support/cli-run.js";
import { VERSION } from "../../src/app/version.js";

const cli = new ShimmedCli();
after(() => cli.remove());

/** A configuration the daemon would act on: if a --help started it, the shims would log its commands. */
const DAEMON_ENV = { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000", KNOCK_INTERFACE: "lo", KNOCK_HTTP_ADDR: "127.0.0.1:19180" };

const COMMANDS = ["run", "cleanup", "knock", "convert", "check", "healthcheck", "version", "help"];

describe("every subcommand", () => {
  for (const command of COMMANDS) {
    for (const flag of ["--help", "-h"]) {
      test(`${command} ${flag} prints its usage on stdout, exits 0 and runs nothing`, () => {
        const r = cli.run([command, flag], DAEMON_ENV);
        assert.equal(r.stderr, "");
        assert.equal(r.status, 0);
        assert.match(r.stdout, new RegExp(`^usage: knockgate ${command === "run" ? "\\[run\\]" : command}\\s`));
        assert.deepEqual(r.calls, []);
      });
    }

    test(`${command} --bogus is a usage error naming the option, and runs nothing`, () => {
      const r = cli.run([command, "--bogus"], DAEMON_ENV);
      assert.equal(r.status, 64);
      assert.match(r.stderr, new RegExp(`^knockgate ${command}: .*--bogus`));
      assert.equal(r.stdout, "");
      assert.deepEqual(r.calls, []);
    });
  }

  for (const command of ["run", "cleanup", "check", "healthcheck", "version"]) {
    test(`${command} with a stray argument is a usage error naming it, and runs nothing`, () => {
      const r = cli.run([command, "stray"], DAEMON_ENV);
      assert.equal(r.status, 64);
      assert.match(r.stderr, new RegExp(`^knockgate ${command}: .*"stray"`));
      assert.equal(r.stdout, "");
      assert.deepEqual(r.calls, []);
    });
  }
});

describe("knockgate", () => {
  for (const args of [["--version"], ["-V"], ["version"], ["knock", "--version"], ["knock", "-V"]]) {
    test(`${args.join(" ")} prints the version, the revision and the Node.js version`, () => {
      const r = cli.run(args);
      assert.equal(r.status, 0);
      assert.equal(r.stdout, `knockgate ${VERSION} (revision unknown, Node.js ${process.version})\n`);
    });
  }

  test("the revision is the image's KNOCKGATE_REVISION when set", () => {
    const r = cli.run(["version"], { KNOCKGATE_REVISION: "0123abc" });
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^knockgate \S+ \(revision 0123abc, /);
  });

  test("help COMMAND prints that command's usage", () => {
    const r = cli.run(["help", "check"]);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^usage: knockgate check\b/);
  });

  test("an unknown command or top-level option is a usage error that names it", () => {
    for (const arg of ["bogus", "--bogus"]) {
      const r = cli.run([arg], DAEMON_ENV);
      assert.equal(r.status, 64);
      assert.match(r.stderr, new RegExp(`^knockgate: .*${arg}`));
      assert.deepEqual(r.calls, []);
    }
  });

  test("knock --door reads the sequence from _SEQUENCE_FILE as the daemon does, and names a file it cannot read", () => {
    const file = cli.file("sequence", "7000,8000:udp\n");
    const r = cli.run(["knock", "-v", "--door", "ssh", "127.0.0.1"], { KNOCK_DOOR_SSH_SEQUENCE_FILE: file });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stderr.split("\n").filter(Boolean), ["hitting tcp 127.0.0.1:7000", "hitting udp 127.0.0.1:8000"]);
    const missing = cli.run(["knock", "--door", "ssh", "127.0.0.1"], { KNOCK_DOOR_SSH_SEQUENCE_FILE: "/nonexistent/sequence" });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^knockgate knock: KNOCK_DOOR_SSH_SEQUENCE_FILE: cannot read \/nonexistent\/sequence \(ENOENT\)/);
  });

  test("knock --config names a file it cannot read, and lines of it that are not KEY=VALUE", () => {
    const missing = cli.run(["knock", "--config", "/nonexistent/knockgate.env", "127.0.0.1", "7000"]);
    assert.equal(missing.status, 1);
    assert.equal(missing.stderr, "knockgate knock: cannot read /nonexistent/knockgate.env: no such file or directory\n");
    const file = cli.file("client.env", "KNOCK_DOOR_SSH_SEQUENCE 7000,8000\n");
    const broken = cli.run(["knock", "--env-file", file, "--door", "ssh", "127.0.0.1"]);
    assert.equal(broken.status, 1);
    assert.equal(broken.stderr, `knockgate knock: ${file}:1: not a KEY=VALUE line (a name of letters, digits and _, then =); the line is not shown, it may hold a secret\n`);
  });

  test("knock still reports its own semantic usage errors with exit 64", () => {
    const r = cli.run(["knock", "-4", "-6", "localhost", "7000"]);
    assert.equal(r.status, 64);
    assert.match(r.stderr, /^knockgate knock: -4 and -6 exclude each other/);
  });
});
