import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KnockError } from "../../src/core/errors.js";
import { findShellSyntax, ShellWordsError, splitShellWords, substituteArgv } from "../../src/config/shellwords.js";

describe("splitShellWords", () => {
  test("runs of spaces, tabs and newlines separate words", () => {
    assert.deepEqual(splitShellWords("  /usr/bin/systemctl \t start\n sshd  "), ["/usr/bin/systemctl", "start", "sshd"]);
  });

  test("an empty or blank string has no words", () => {
    assert.deepEqual(splitShellWords(""), []);
    assert.deepEqual(splitShellWords(" \t\n"), []);
  });

  test("single quotes keep everything literal, backslashes and $ included", () => {
    assert.deepEqual(splitShellWords(`mail -s 'knock from %IP%: \\n $USER "x"' root`), [
      "mail",
      "-s",
      `knock from %IP%: \\n $USER "x"`,
      "root",
    ]);
  });

  test('inside double quotes a backslash escapes only " \\ $ and `', () => {
    assert.deepEqual(splitShellWords(String.raw`"a \"b\" \\ \$x \` \n \t"`), [String.raw`a "b" \ $x ` + "` " + String.raw`\n \t`]);
  });

  test("outside quotes a backslash escapes the next character", () => {
    assert.deepEqual(splitShellWords(String.raw`a\ b c\'d \"e\"`), ["a b", "c'd", '"e"']);
  });

  test("quoted and unquoted parts next to each other form one word", () => {
    assert.deepEqual(splitShellWords(`--comment=knock'ed by '"%IP%"`), ["--comment=knocked by %IP%"]);
  });

  test("empty quotes make an empty argument", () => {
    assert.deepEqual(splitShellWords(`cmd '' ""`), ["cmd", "", ""]);
  });

  test("shell operators and expansions are ordinary characters", () => {
    assert.deepEqual(splitShellWords("echo a;b | c && d $(id) `x` > f *"), [
      "echo",
      "a;b",
      "|",
      "c",
      "&&",
      "d",
      "$(id)",
      "`x`",
      ">",
      "f",
      "*",
    ]);
  });

  test("a CRLF line ending leaves no carriage return in the last word", () => {
    assert.deepEqual(splitShellWords("logger knock\r\n"), ["logger", "knock"]);
  });

  test("backslash-newline continues the word on the next line", () => {
    assert.deepEqual(splitShellWords("ab\\\ncd \"ef\\\ngh\""), ["abcd", "efgh"]);
  });

  test("an unterminated single quote throws ShellWordsError at the opening quote", () => {
    assert.throws(
      () => splitShellWords("echo 'abc"),
      (err: unknown) =>
        err instanceof ShellWordsError &&
        err.position === 5 &&
        err.message === "unterminated single quote at position 5 in: echo 'abc",
    );
  });

  test("an escaped double quote does not close the quote that is open", () => {
    assert.throws(
      () => splitShellWords(String.raw`a "b\"`),
      (err: unknown) => err instanceof ShellWordsError && err.position === 2 && err.message.startsWith("unterminated double quote"),
    );
  });

  test("a trailing backslash throws instead of being dropped", () => {
    assert.throws(
      () => splitShellWords("cmd arg\\"),
      (err: unknown) => err instanceof ShellWordsError && err.position === 7 && err.message.startsWith("backslash at the end"),
    );
  });

  test("ShellWordsError is a configuration error of the catalogue", () => {
    try {
      splitShellWords('"');
      assert.fail("expected a throw");
    } catch (err) {
      assert.ok(err instanceof KnockError);
      assert.equal(err.code, "KNOCK_E_CONFIG");
      assert.equal(err.name, "ShellWordsError");
    }
  });
});

describe("substituteArgv", () => {
  const vars = { IP: "203.0.113.7", DOOR: "SSH", PORTS: "22/tcp,2222/tcp" };

  test("replaces %IP%, %DOOR% and %PORTS% anywhere inside each argument", () => {
    assert.deepEqual(substituteArgv(["notify", "--src=%IP%", "%DOOR%:%PORTS%", "%IP%%IP%"], vars), [
      "notify",
      "--src=203.0.113.7",
      "SSH:22/tcp,2222/tcp",
      "203.0.113.7203.0.113.7",
    ]);
  });

  test("an injection attempt in %IP% stays exactly one argument", () => {
    const hostile = "1.2.3.4; rm -rf / $(id)";
    const argv = substituteArgv(splitShellWords("/usr/local/bin/notify --from %IP% --door %DOOR%"), { ...vars, IP: hostile });
    assert.deepEqual(argv, ["/usr/local/bin/notify", "--from", hostile, "--door", "SSH"]);
  });

  test("a substituted value is not scanned again for tokens", () => {
    assert.deepEqual(substituteArgv(["%IP%-%DOOR%"], { IP: "%DOOR%", DOOR: "SSH" }), ["%DOOR%-SSH"]);
  });

  test("tokens without a value, including Object.prototype names, stay as written", () => {
    assert.deepEqual(substituteArgv(["%USER%", "%constructor%", "100%", "%%IP%"], vars), ["%USER%", "%constructor%", "100%", "%203.0.113.7"]);
  });

  test("the input argv is left unchanged", () => {
    const argv = ["a", "%IP%"];
    substituteArgv(argv, vars);
    assert.deepEqual(argv, ["a", "%IP%"]);
  });
});

describe("findShellSyntax", () => {
  test("a plain command with quoted metacharacters needs no shell", () => {
    assert.equal(findShellSyntax("/usr/bin/systemctl start sshd"), undefined);
    assert.equal(findShellSyntax(`mail -s 'a;b|c > $(x)' root`), undefined);
    assert.equal(findShellSyntax(String.raw`echo \$HOME "\$x" price 5 $`), undefined);
    assert.equal(findShellSyntax("echo a#b"), undefined);
  });

  const cases: [string, number, string][] = [
    ["a; b", 1, "command separator ;"],
    ["echo %IP% | mail root", 10, "pipe or || list"],
    ["a && b", 2, "background or && list"],
    ["logger x > /tmp/log", 9, "output redirection >"],
    ["echo $(id)", 5, "command substitution $(...)"],
    ["echo `id`", 5, "command substitution `...`"],
    ['echo "`id`"', 6, "command substitution `...`"],
    ["echo $HOME", 5, "parameter expansion $"],
    ['echo "${HOME}"', 6, "parameter expansion $"],
    ["rm /tmp/knock-*", 14, "filename pattern *"],
    ["logger knock # note", 13, "comment #"],
    ["cat ~/x", 4, "home directory ~"],
    ["  LANG=C logger x", 2, "variable assignment before the command"],
    ["cd /tmp", 0, 'shell keyword or builtin "cd"'],
  ];
  for (const [input, index, construct] of cases) {
    test(`reports ${construct} in ${JSON.stringify(input)}`, () => {
      assert.deepEqual(findShellSyntax(input), { index, construct });
    });
  }

  test("throws ShellWordsError for an unterminated quote", () => {
    assert.throws(() => findShellSyntax("echo 'x"), ShellWordsError);
  });
});
