import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseEnvFile as parseWithProblems } from "../../src/config/env-file.js";

const parseEnvFile = (text: string) => parseWithProblems(text, "f.env").env;

describe("parseEnvFile", () => {
  test("KEY=VALUE lines become entries, blank lines and # comments are skipped", () => {
    const text = "# knockgate\n\nKNOCK_DOOR_SSH_SEQUENCE=7000,8000,9000\n   # indented comment\n\t\nKNOCK_FIREWALL=iptables\n";
    assert.deepEqual(parseEnvFile(text), { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000", KNOCK_FIREWALL: "iptables" });
  });

  test("double and single quotes are removed and keep what is inside literally", () => {
    const text = `A="7000, 8000"\nB='syn,!ack'\nC="# not a comment"\nD='it''s'\nE=""`;
    assert.deepEqual(parseEnvFile(text), { A: "7000, 8000", B: "syn,!ack", C: "# not a comment", D: "it''s", E: "" });
  });

  test("mismatched quotes are kept as part of the value", () => {
    assert.deepEqual(parseEnvFile(`A="abc'\nB="abc`), { A: `"abc'`, B: `"abc` });
  });

  test("an export prefix is accepted", () => {
    assert.deepEqual(parseEnvFile("export KNOCK_ALLOW=10.0.0.0/8\nexport\tKNOCK_ON_EXIT='remove'"), {
      KNOCK_ALLOW: "10.0.0.0/8",
      KNOCK_ON_EXIT: "remove",
    });
  });

  test("an inline comment after whitespace is cut off, a # inside a value is kept", () => {
    assert.deepEqual(parseEnvFile("A=30 # seconds\nB=a#b\nC=x\t# tab comment"), { A: "30", B: "a#b", C: "x" });
  });

  test("an inline comment after a quoted value is cut off and the quotes removed", () => {
    assert.deepEqual(parseEnvFile(`A="7000,8000" # the knock\nB='a # b' # c`), { A: "7000,8000", B: "a # b" });
    assert.deepEqual(parseEnvFile(`C="x" # say "hi"`), { C: "x" });
  });

  test("CRLF line endings are handled", () => {
    const text = "# windows\r\nA=1\r\nB=\"two\"\r\n\r\nC=three # x\r\n";
    assert.deepEqual(parseEnvFile(text), { A: "1", B: "two", C: "three" });
  });

  test("spaces around = and the value are trimmed", () => {
    assert.deepEqual(parseEnvFile("  KNOCK_LOG_LEVEL =  debug  "), { KNOCK_LOG_LEVEL: "debug" });
  });

  test("lines that are not KEY=VALUE are problems naming the file and line, never the line's text", () => {
    const { env, problems } = parseWithProblems("# ok\njust words\n1BAD=7123\n\n=x\nGOOD=y\nKNOCK_DOOR_SSH_SEQUENCE 7123,8234", "f.env");
    assert.deepEqual(env, { GOOD: "y" });
    assert.deepEqual(problems.map((p) => p.variable), ["f.env:2", "f.env:3", "f.env:5", "f.env:7"]);
    assert.doesNotMatch(problems.map((p) => p.message).join(), /7123|words/);
    assert.match(problems[0]?.message ?? "", /^not a KEY=VALUE line/);
  });

  test("a later line overrides an earlier one, and the value may contain =", () => {
    assert.deepEqual(parseEnvFile("A=1\nA=2\nB=x=y"), { A: "2", B: "x=y" });
  });
});
