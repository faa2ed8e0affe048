import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { runConvert } from "../../src/cli/convert/command.js";
import { parseIptablesRule } from "../../src/cli/convert/iptables-rule.js";
import { KnockdConfSyntaxError, parseKnockdConf } from "../../src/cli/convert/knockd-conf.js";
import { convertKnockdConf } from "../../src/cli/convert/to-env.js";
import { splitShellWords } from "../../src/config/shellwords.js";

// The knockd man page / Debian tutorial configuration, as shipped (tabs included).
const TUTORIAL = `[options]
	UseSyslog

[openSSH]
	sequence    = 7000,8000,9000
	seq_timeout = 5
	command     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
	tcpflags    = syn

[closeSSH]
	sequence    = 9000,8000,7000
	seq_timeout = 5
	command     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
	tcpflags    = syn
`;

const DEBIAN_OPEN_CLOSE = `[options]
	UseSyslog

[openClosePorts]
	sequence      = 7000,8000,9000
	seq_timeout   = 5
	tcpflags      = syn
	start_command = /sbin/iptables -I INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
	cmd_timeout   = 10
	stop_command  = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
`;

/** The KEY=value lines of an env, in order: what knockgate will read. */
const vars = (env: string): string[] => env.split("\n").filter((l) => l !== "" && !l.startsWith("#"));

const convert = (text: string) => convertKnockdConf(parseKnockdConf(text));

function run(text: string | undefined, args: string[] = ["knockd.conf"]) {
  let stdout = "";
  let stderr = "";
  const code = runConvert(args, {
    readFile: (path) => {
      if (text === undefined) return readFileSync(path, "utf8");
      assert.equal(path, "knockd.conf");
      return text;
    },
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
  });
  return { code, stdout, stderr, errLines: stderr.split("\n").filter(Boolean) };
}

describe("parseKnockdConf", () => {
  test("keeps line numbers, lower-cases keys and trims values through tabs, CRLF and comments", () => {
    const conf = parseKnockdConf("\uFEFF# knockd\r\n[options]\r\n\tUseSyslog\r\n  LogFile=/var/log/knockd.log\r\n\r\n[openSSH]\r\n   # a comment\r\n  SeQuEnCe   =\t7000,8000 \r\n\tCommand = a=b\r\n");
    assert.deepEqual(conf, {
      options: [
        { key: "usesyslog", value: undefined, line: 3 },
        { key: "logfile", value: "/var/log/knockd.log", line: 4 },
      ],
      doors: [
        {
          name: "openSSH",
          line: 6,
          entries: [
            { key: "sequence", value: "7000,8000", line: 8 },
            { key: "command", value: "a=b", line: 9 },
          ],
        },
      ],
    });
  });

  test("[Options] in any case is the options section", () => {
    assert.deepEqual(parseKnockdConf("[OPTIONS]\nInterface = eth1\n").options, [{ key: "interface", value: "eth1", line: 2 }]);
  });

  test("lists every line knockd would refuse, with its number", () => {
    assert.throws(
      () => parseKnockdConf("sequence = 1,2,3\n[]\n[door\n[ok]\n= 5\n"),
      (err: unknown) =>
        err instanceof KnockdConfSyntaxError &&
        JSON.stringify(err.errors) ===
          JSON.stringify([
            { line: 1, message: `"sequence = 1,2,3" is outside any section; start with [options] or a [door]` },
            { line: 2, message: "empty section name []" },
            { line: 3, message: `section header "[door" has no closing "]"` },
            { line: 5, message: `"= 5" has no key before "="` },
          ]),
    );
  });
});

describe("parseIptablesRule", () => {
  const accepted: [string, ReturnType<typeof parseIptablesRule>][] = [
    ["/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT", { op: "grant", ports: [{ port: 22, proto: "tcp" }] }],
    ["iptables -I INPUT 1 -s %IP% -p udp --destination-port 1194 -j ACCEPT", { op: "grant", ports: [{ port: 1194, proto: "udp" }] }],
    ["/usr/sbin/ip6tables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT", { op: "revoke", ports: [{ port: 22, proto: "tcp" }] }],
    ["iptables -w -I INPUT -s %IP%/32 -p TCP -m tcp --dport 2222 -j ACCEPT", { op: "grant", ports: [{ port: 2222, proto: "tcp" }] }],
    [
      "iptables --append INPUT --source %IP% --protocol tcp -m multiport --dports 80,443 --jump ACCEPT",
      { op: "grant", ports: [{ port: 80, proto: "tcp" }, { port: 443, proto: "tcp" }] },
    ],
  ];
  for (const [command, rule] of accepted) {
    test(`reads ${command} as a ${typeof rule === "string" ? "?" : rule.op}`, () => {
      assert.deepEqual(parseIptablesRule(splitShellWords(command)), rule);
    });
  }

  const rejected: [string, string][] = [
    ["/usr/sbin/iptables -A INPUT -s %IP% --dport 22 -j ACCEPT", "--dport without -p tcp|udp: iptables rejects this rule, so knockd never opened the port"],
    ["/usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT", `"--syn" has no knockgate equivalent`],
    ["iptables -A INPUT -s %IP% -p tcp -j ACCEPT", "it opens every port (no --dport)"],
    ["iptables -A INPUT -s %IP% -p tcp --dport 1000:2000 -j ACCEPT", "--dport 1000:2000 is a port range; only single ports convert"],
    ["iptables -A INPUT -s %IP% -p tcp --dport 70000 -j ACCEPT", "port 70000 is out of range 1-65535"],
    ["iptables -A INPUT -s %IP% -p tcp --dport ssh -j ACCEPT", `"ssh" is not a port number`],
    ["iptables -A INPUT -s %IP% -p tcp --dport 22 -j DROP", "its target is DROP, not ACCEPT"],
    ["iptables -A FORWARD -s %IP% -p tcp --dport 22 -j ACCEPT", "it works on chain FORWARD, not INPUT"],
    ["iptables -A INPUT -s 10.0.0.0/8 -p tcp --dport 22 -j ACCEPT", "it is not limited to the knocker's address (-s %IP%)"],
    ["iptables -t nat -A PREROUTING -s %IP% -p tcp --dport 22 -j ACCEPT", "it changes the nat table, not a filter rule"],
    ["/usr/bin/systemctl start sshd", "/usr/bin/systemctl is not iptables"],
  ];
  for (const [command, why] of rejected) {
    test(`does not read ${command} as a grant`, () => {
      assert.equal(parseIptablesRule(splitShellWords(command)), why);
    });
  }
});

describe("convert: the classic configurations", () => {
  test("the tutorial's openSSH/closeSSH pair becomes door SSH with a close sequence", () => {
    const { code, stdout, errLines } = run(TUTORIAL);
    assert.equal(code, 0);
    assert.deepEqual(vars(stdout), [
      "KNOCK_DOOR_SSH_SEQUENCE=7000,8000,9000",
      "KNOCK_DOOR_SSH_CLOSE_SEQUENCE=9000,8000,7000",
      "KNOCK_DOOR_SSH_SEQ_TIMEOUT=5",
      "KNOCK_DOOR_SSH_TCPFLAGS=syn",
      "KNOCK_DOOR_SSH_PORTS=22/tcp",
      "KNOCK_DOOR_SSH_OPEN_FOR=0",
    ]);
    assert.deepEqual(errLines, [
      "knockd.conf: note: no Interface in [options] — knockd listened on eth0 unless started with -i; knockgate listens on the default-route interfaces unless KNOCK_INTERFACE is set",
      "knockd.conf:2: note: UseSyslog — not applicable: knockgate logs JSON lines to standard output",
    ]);
    assert.deepEqual(convert(TUTORIAL).problems, []);
  });

  test("each variable is preceded by a comment naming its section and line", () => {
    const lines = convert(TUTORIAL).env.split("\n");
    const at = (v: string) => lines[lines.indexOf(v) - 1];
    assert.equal(at("KNOCK_DOOR_SSH_SEQUENCE=7000,8000,9000"), "# from [openSSH] at line 5: sequence");
    assert.equal(at("KNOCK_DOOR_SSH_CLOSE_SEQUENCE=9000,8000,7000"), "# from [closeSSH] at line 11: sequence");
    assert.equal(at("KNOCK_DOOR_SSH_PORTS=22/tcp"), "# from [openSSH] at line 7: the iptables grant in command");
    assert.equal(at("KNOCK_DOOR_SSH_OPEN_FOR=0"), "# from [closeSSH] at line 13: the grant lasts until the close sequence revokes it");
  });

  test("Debian's openClosePorts with start/stop_command and cmd_timeout becomes a timed door", () => {
    const { code, stdout } = run(DEBIAN_OPEN_CLOSE);
    assert.equal(code, 0);
    assert.deepEqual(vars(stdout), [
      "KNOCK_DOOR_OPENCLOSEPORTS_SEQUENCE=7000,8000,9000",
      "KNOCK_DOOR_OPENCLOSEPORTS_SEQ_TIMEOUT=5",
      "KNOCK_DOOR_OPENCLOSEPORTS_TCPFLAGS=syn",
      "KNOCK_DOOR_OPENCLOSEPORTS_PORTS=22/tcp",
      "KNOCK_DOOR_OPENCLOSEPORTS_OPEN_FOR=10",
    ]);
  });

  test("CRLF, mixed-case keys, odd spacing and comments convert like the tutorial", () => {
    const messy = [
      "# /etc/knockd.conf",
      "[options]",
      "  LogFile=/var/log/knockd.log",
      "    InterFace   =   ens3  ",
      "",
      "[openSSH]",
      "  SEQUENCE=7000:TCP, 8000:tcp ,9000   # knock knock",
      "\t\t# seq_timeout = 99",
      "  Seq_Timeout=5",
      "  COMMAND=/sbin/iptables   -A INPUT  -s %IP%  -p tcp  --dport 22  -j ACCEPT",
      "  TCPFlags = SYN",
      "[closeSSH]",
      "sequence=9000,8000,7000",
      "seq_timeout=5",
      "tcpflags=syn",
      "command=/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT",
    ].join("\r\n");
    const result = convert(messy);
    assert.deepEqual(result.problems, []);
    assert.deepEqual(vars(result.env), [
      "KNOCK_INTERFACE=ens3",
      "KNOCK_DOOR_SSH_SEQUENCE=7000,8000,9000",
      "KNOCK_DOOR_SSH_CLOSE_SEQUENCE=9000,8000,7000",
      "KNOCK_DOOR_SSH_SEQ_TIMEOUT=5",
      "KNOCK_DOOR_SSH_TCPFLAGS=syn",
      "KNOCK_DOOR_SSH_PORTS=22/tcp",
      "KNOCK_DOOR_SSH_OPEN_FOR=0",
    ]);
    assert.deepEqual(result.notes, [{ line: 3, message: "LogFile = /var/log/knockd.log — not applicable: knockgate logs to standard output for the service manager" }]);
  });
});

describe("convert: door settings", () => {
  test("command and start_command are the same directive", () => {
    const conf = (key: string) =>
      `[web]\nsequence = 1,2,3\nseq_timeout = 5\ntcpflags = syn\n${key} = iptables -A INPUT -s %IP% -p tcp --dport 443 -j ACCEPT\ncmd_timeout = 20\nstop_command = iptables -D INPUT -s %IP% -p tcp --dport 443 -j ACCEPT\n`;
    const expected = [
      "KNOCK_DOOR_WEB_SEQUENCE=1,2,3",
      "KNOCK_DOOR_WEB_SEQ_TIMEOUT=5",
      "KNOCK_DOOR_WEB_TCPFLAGS=syn",
      "KNOCK_DOOR_WEB_PORTS=443/tcp",
      "KNOCK_DOOR_WEB_OPEN_FOR=20",
    ];
    assert.deepEqual(vars(convert(conf("command")).env), expected);
    assert.deepEqual(vars(convert(conf("start_command")).env), expected);
  });

  test("udp knocks keep :udp, tcp knocks drop :tcp, and a udp grant gives PORTS n/udp", () => {
    const result = convert(
      "[vpn]\nsequence = 2222:udp,3333:tcp,4444:UDP\nseq_timeout = 15\ntcpflags = syn,!ack\nstart_command = iptables -A INPUT -s %IP% -p udp --dport 1194 -j ACCEPT\ncmd_timeout = 5\nstop_command = iptables -D INPUT -s %IP% -p udp --dport 1194 -j ACCEPT\n",
    );
    assert.deepEqual(result.problems, []);
    assert.deepEqual(vars(result.env), [
      "KNOCK_DOOR_VPN_SEQUENCE=2222:udp,3333,4444:udp",
      "KNOCK_DOOR_VPN_SEQ_TIMEOUT=15",
      "KNOCK_DOOR_VPN_TCPFLAGS=syn,!ack",
      "KNOCK_DOOR_VPN_PORTS=1194/udp",
      "KNOCK_DOOR_VPN_OPEN_FOR=5",
    ]);
  });

  test("knockd's defaults are written out: seq_timeout 25, no flag filter, cmd_timeout 10", () => {
    const result = convert(
      "[ssh]\nsequence = 1,2,3\nstart_command = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\nstop_command = iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n",
    );
    assert.deepEqual(vars(result.env), [
      "KNOCK_DOOR_SSH_SEQUENCE=1,2,3",
      "KNOCK_DOOR_SSH_SEQ_TIMEOUT=25",
      "KNOCK_DOOR_SSH_TCPFLAGS=any",
      "KNOCK_DOOR_SSH_PORTS=22/tcp",
      "KNOCK_DOOR_SSH_OPEN_FOR=10",
    ]);
    assert.match(result.env, /\n# \[ssh\] sets no seq_timeout: knockd's default is 25 s\nKNOCK_DOOR_SSH_SEQ_TIMEOUT=25\n/);
  });

  test("[options] Interface becomes KNOCK_INTERFACE; PidFile is only a note", () => {
    const result = convert("[options]\n  Interface = eth1\n  PidFile = /run/knockd.pid\n[a]\nsequence=1,2\ncommand=iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\nstop_command=iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n");
    assert.equal(vars(result.env)[0], "KNOCK_INTERFACE=eth1");
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.notes, [{ line: 3, message: "PidFile = /run/knockd.pid — not applicable: knockgate runs in the foreground and writes no pid file" }]);
  });

  test("sections named ssh-open/ssh-close pair into door SSH", () => {
    const result = convert(
      "[ssh-close]\nsequence = 3,2,1\ntcpflags = syn\ncommand = iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n[ssh-open]\nsequence = 1,2,3\ntcpflags = syn\ncommand = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n",
    );
    assert.deepEqual(result.problems, []);
    assert.deepEqual(vars(result.env), [
      "KNOCK_DOOR_SSH_SEQUENCE=1,2,3",
      "KNOCK_DOOR_SSH_CLOSE_SEQUENCE=3,2,1",
      "KNOCK_DOOR_SSH_SEQ_TIMEOUT=25",
      "KNOCK_DOOR_SSH_TCPFLAGS=syn",
      "KNOCK_DOOR_SSH_PORTS=22/tcp",
      "KNOCK_DOOR_SSH_OPEN_FOR=0",
    ]);
  });

  test("a close section for a timed door's port ends its grant early; OPEN_FOR stays cmd_timeout", () => {
    const result = convert(
      DEBIAN_OPEN_CLOSE + "[closeEarly]\n\tsequence = 9000,8000,7000\n\tseq_timeout = 5\n\ttcpflags = syn\n\tcommand = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n",
    );
    assert.deepEqual(result.problems, []);
    assert.deepEqual(vars(result.env), [
      "KNOCK_DOOR_OPENCLOSEPORTS_SEQUENCE=7000,8000,9000",
      "KNOCK_DOOR_OPENCLOSEPORTS_CLOSE_SEQUENCE=9000,8000,7000",
      "KNOCK_DOOR_OPENCLOSEPORTS_SEQ_TIMEOUT=5",
      "KNOCK_DOOR_OPENCLOSEPORTS_TCPFLAGS=syn",
      "KNOCK_DOOR_OPENCLOSEPORTS_PORTS=22/tcp",
      "KNOCK_DOOR_OPENCLOSEPORTS_OPEN_FOR=10",
    ]);
  });

  test("an ip6tables twin in start_command_6/stop_command_6 converts without a problem", () => {
    const result = convert(
      "[smtp]\nsequence = 1,2,3\nstart_command = iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\nstart_command_6 = ip6tables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\nstop_command = iptables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\nstop_command_6 = ip6tables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\n",
    );
    assert.deepEqual(result.problems, []);
    assert.ok(vars(result.env).includes("KNOCK_DOOR_SMTP_PORTS=25/tcp"));
  });
});

describe("convert: custom commands", () => {
  test("commands that are not iptables grants become ON_OPEN/ON_CLOSE with %IP% kept", () => {
    const result = convert(
      "[sshd]\nsequence = 1,2,3\nseq_timeout = 5\ntcpflags = syn\nstart_command = /usr/bin/systemctl start sshd\ncmd_timeout = 60\nstop_command = mail -s 'knock from %IP% done' root\n",
    );
    assert.deepEqual(vars(result.env), [
      "KNOCK_DOOR_SSHD_SEQUENCE=1,2,3",
      "KNOCK_DOOR_SSHD_SEQ_TIMEOUT=5",
      "KNOCK_DOOR_SSHD_TCPFLAGS=syn",
      "KNOCK_DOOR_SSHD_ON_OPEN=/usr/bin/systemctl start sshd",
      "KNOCK_DOOR_SSHD_ON_CLOSE=mail -s 'knock from %IP% done' root",
      "KNOCK_DOOR_SSHD_OPEN_FOR=60",
    ]);
    // knockgate splits the value itself: the quoted subject stays one argument.
    assert.deepEqual(splitShellWords("mail -s 'knock from %IP% done' root"), ["mail", "-s", "knock from %IP% done", "root"]);
  });

  test("a door that only runs a command is a problem: knockgate would also open its default port", () => {
    const result = convert("[sshd]\nsequence = 1,2,3\nstart_command = /usr/bin/systemctl start sshd\n");
    assert.deepEqual(result.problems, [
      {
        line: 3,
        message: "start_command opens no port itself — a knockgate door also grants KNOCK_DOOR_SSHD_PORTS (default 22/tcp): set it to what the command opens",
      },
    ]);
  });

  test("the man page's iptables rule without -p runs as a command and says why it is no grant", () => {
    const result = convert("[openSSH]\nsequence = 7000,8000,9000\ncommand = /usr/sbin/iptables -A INPUT -s %IP% --dport 22 -j ACCEPT\n");
    assert.equal(result.problems.length, 1);
    assert.equal(
      result.problems[0]?.message,
      "command opens no port itself (not read as a port grant: --dport without -p tcp|udp: iptables rejects this rule, so knockd never opened the port) — a knockgate door also grants KNOCK_DOOR_OPENSSH_PORTS (default 22/tcp): set it to what the command opens",
    );
  });

  test("a trailing shell comment on a command is dropped, as sh would", () => {
    const result = convert("[log]\nsequence = 1,2\ncommand = /usr/bin/logger knock %IP%   # tell syslog\n");
    assert.ok(vars(result.env).includes("KNOCK_DOOR_LOG_ON_OPEN=/usr/bin/logger knock %IP%"));
  });

  test("a pipeline cannot run without a shell: reported with its line and the door left out", () => {
    const { code, stdout, errLines } = run("[mailme]\nsequence = 1,2,3\nstart_command = echo %IP% | mail -s knock root\n");
    assert.equal(code, 1);
    assert.equal(vars(stdout).length, 0);
    assert.deepEqual(errLines.slice(1), [
      "knockd.conf:3: start_command uses shell syntax (pipe or || list) — knockgate runs commands without a shell, so door [mailme] is not converted; put the command in a script and call the script",
      "knockgate convert: 1 thing could not be converted; fix knockd.conf, or pass --force to accept the output without them",
    ]);
  });

  test("&&, redirections and $(...) are reported the same way", () => {
    const problems = convert(
      "[a]\nsequence=1,2\ncommand=iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT && logger ok\n[b]\nsequence=3,4\ncommand=logger $(date) > /tmp/x\n",
    ).problems;
    assert.deepEqual(
      problems.map((p) => [p.line, p.message.slice(0, p.message.indexOf(")") + 1)]),
      [
        [3, "command uses shell syntax (background or && list)"],
        [6, "command uses shell syntax (command substitution $(...)"],
      ],
    );
  });
});

describe("convert: IPv6 commands", () => {
  test("an identical custom command for IPv6 converts without a problem", () => {
    const result = convert("[log]\nsequence = 1,2\ncommand = /usr/bin/logger knock %IP%\ncommand_6 = /usr/bin/logger knock %IP%\n");
    // Only the usual problem of a command-only door remains; nothing about command_6.
    assert.deepEqual(result.problems, [
      {
        line: 3,
        message: "command opens no port itself — a knockgate door also grants KNOCK_DOOR_LOG_PORTS (default 22/tcp): set it to what the command opens",
      },
    ]);
  });

  test("an IPv6 command that differs from the IPv4 one is a problem", () => {
    const result = convert(
      DEBIAN_OPEN_CLOSE + "\tstop_command_6 = /usr/sbin/ip6tables -D INPUT -s %IP% -p tcp --dport 2222 -j ACCEPT\n",
    );
    assert.deepEqual(result.problems, [
      { line: 11, message: "stop_command_6 does something else than its IPv4 command — knockgate has one door for IPv4 and IPv6" },
    ]);
  });
});

describe("convert: what cannot be expressed", () => {
  const OTS = `[options]
  UseSyslog
[opencloseSMTP]
  one_time_sequences = /etc/knockd/smtp_sequences
  seq_timeout        = 15
  tcpflags           = fin,!ack
  start_command      = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
  cmd_timeout        = 5
  stop_command       = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
`;

  test("one_time_sequences is reported with its line number and the door is left out", () => {
    const { code, stdout, errLines } = run(OTS);
    assert.equal(code, 1);
    assert.deepEqual(vars(stdout), []);
    assert.ok(
      errLines.includes(
        "knockd.conf:4: one_time_sequences = /etc/knockd/smtp_sequences — knockgate has only a fixed sequence per door; without a sequence line the door is not converted",
      ),
    );
    assert.match(stdout, /\n# NOT CONVERTED from knockd\.conf .*\n# line 4: one_time_sequences = \/etc\/knockd\/smtp_sequences — /);
  });

  test("--force prints the same env and exits 0 despite problems", () => {
    const plain = run(OTS);
    const forced = run(OTS, ["--force", "knockd.conf"]);
    assert.equal(plain.code, 1);
    assert.equal(forced.code, 0);
    assert.equal(forced.stdout, plain.stdout);
    assert.equal(forced.errLines.at(-1), "knockgate convert: 1 thing left out (--force)");
  });

  test("target, unknown keys, bare words and a section without sequence are each reported", () => {
    const result = convert(
      "[wol]\nsequence = 1,2,3\ntarget = 192.168.1.20\ncommand = /usr/bin/wakeonlan 00:11:22:33:44:55\nfrobnicate = yes\nverbose\n[empty]\ntcpflags = syn\n",
    );
    assert.deepEqual(result.problems, [
      { line: 3, message: "target = 192.168.1.20 — knockgate only counts knocks addressed to this host itself" },
      { line: 4, message: "command opens no port itself — a knockgate door also grants KNOCK_DOOR_WOL_PORTS (default 22/tcp): set it to what the command opens" },
      { line: 5, message: `unknown directive "frobnicate" — knockd rejects it too; not converted` },
      { line: 6, message: `"verbose" without "= value" — knockd rejects this line too` },
      { line: 7, message: "door [empty] has no sequence — nothing to convert" },
    ]);
  });

  test("a close section whose tcpflags differ from the open section's is a problem", () => {
    const result = convert(TUTORIAL.replace(/(\[closeSSH\][\s\S]*)tcpflags {4}= syn/, "$1tcpflags    = syn,ack"));
    assert.deepEqual(result.problems, [
      { line: 14, message: "[closeSSH] tcpflags syn,ack differ from [openSSH]'s syn — knockgate uses syn for both sequences" },
    ]);
  });

  test("a revoke-only section with no matching grant is reported, not turned into a door", () => {
    const result = convert("[closeSSH]\nsequence = 9,8,7\ncommand = iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n");
    assert.deepEqual(vars(result.env), []);
    assert.deepEqual(result.problems, [{ line: 3, message: "door [closeSSH] only revokes 22/tcp and no section grants it — not converted" }]);
  });

  test("a grant nothing revokes is reported: knockgate grants always end", () => {
    const result = convert("[openSSH]\nsequence = 7,8,9\ncommand = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n");
    assert.ok(!vars(result.env).some((l) => l.includes("OPEN_FOR")));
    assert.deepEqual(result.problems, [
      { line: 3, message: "[openSSH] grants 22/tcp and nothing revokes it — knockgate grants need an end: OPEN_FOR is left at knockgate's default" },
    ]);
  });

  test("stop_command revoking another port than start_command grants is a problem", () => {
    const result = convert(
      "[x]\nsequence=1,2\nstart_command=iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\nstop_command=iptables -D INPUT -s %IP% -p tcp --dport 80 -j ACCEPT\n",
    );
    assert.deepEqual(vars(result.env), []);
    assert.deepEqual(result.problems, [
      { line: 4, message: "stop_command revokes 80/tcp but start_command grants 22/tcp — knockd left the grant open; not converted" },
    ]);
  });

  test("an empty start_command_6 is a problem: knockd ignored IPv6 knocks, knockgate does not", () => {
    const result = convert(DEBIAN_OPEN_CLOSE + "\tstart_command_6 =\n");
    assert.deepEqual(result.problems, [
      { line: 11, message: "empty start_command_6 — knockd ignored IPv6 knocks here; knockgate opens for IPv4 and IPv6 alike" },
    ]);
  });

  test("sequence and tcpflags go through knockgate's parsers after knockd's syntax: refusals are tied to their line", () => {
    const door = (name: string, settings: string) =>
      `[${name}]\n${settings}command=iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\nstop_command=iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n`;
    const result = convert(
      door("a", "sequence = 1,99999\n") +
        door("b", "sequence = 7000 : UDP,8000   # knock\ntcpflags = syn,constructor\n") +
        door("c", "sequence = 5,6\ntcpflags = any\n"),
    );
    assert.deepEqual(result.problems, [
      { line: 2, message: "sequence = 1,99999 — knock 2 of 2: the port is out of range 1-65535; door [a] is not converted" },
      { line: 7, message: `tcpflags = syn,constructor — "constructor" is not a TCP flag; use fin, syn, rst, psh, ack, urg, each optionally with "!"` },
      { line: 12, message: `tcpflags = any — "any" is not a flag to knockd; leave tcpflags out to count packets with any flags` },
    ]);
    assert.deepEqual(
      vars(result.env).filter((l) => l.includes("_SEQUENCE=")),
      ["KNOCK_DOOR_B_SEQUENCE=7000:udp,8000", "KNOCK_DOOR_C_SEQUENCE=5,6"],
    );
  });

  test("two doors on one sequence are reported: knockgate refuses them", () => {
    const result = convert(DEBIAN_OPEN_CLOSE + DEBIAN_OPEN_CLOSE.replace("[options]\n\tUseSyslog\n", "").replace("openClosePorts", "again"));
    assert.deepEqual(result.problems, [
      { line: 13, message: "sequence 7000,8000,9000 is also the sequence of [openClosePorts] — knockgate refuses two doors on one sequence" },
    ]);
  });

  test("door names are made unique and never end in _CLOSE", () => {
    const door = (name: string, seq: string) =>
      `[${name}]\nsequence=${seq}\ncommand=iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\nstop_command=iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n`;
    const result = convert(door("web-1", "1,2") + door("web 1", "3,4") + door("port_close", "5,6") + door("a-very-long-door-name-indeed", "7,8"));
    assert.deepEqual(
      vars(result.env).filter((l) => l.includes("_SEQUENCE=")),
      [
        "KNOCK_DOOR_WEB_1_SEQUENCE=1,2",
        "KNOCK_DOOR_WEB_1_2_SEQUENCE=3,4",
        "KNOCK_DOOR_PORTCLOSE_SEQUENCE=5,6",
        "KNOCK_DOOR_A_VERY_LONG_DOOR_NA_SEQUENCE=7,8",
      ],
    );
    assert.deepEqual(result.problems, []);
    assert.deepEqual(
      result.notes.map((n) => n.message.slice(0, n.message.indexOf(" —"))),
      [
        "no Interface in [options]",
        "door [web 1] is named WEB_1_2, not WEB_1",
        "door [port_close] is named PORTCLOSE, not PORT_CLOSE",
        "door [a-very-long-door-name-indeed] is named A_VERY_LONG_DOOR_NA, not A_VERY_LONG_DOOR_NAME_INDEED",
      ],
    );
  });
});

describe("convert: command line", () => {
  test("a missing file exits 66 with a clear message and prints nothing", () => {
    const { code, stdout, stderr } = run(undefined, ["/nonexistent/knockd.conf"]);
    assert.equal(code, 66);
    assert.equal(stdout, "");
    assert.equal(stderr, "knockgate convert: cannot read /nonexistent/knockd.conf: no such file\n");
  });

  test("a malformed knockd.conf exits 65 naming each bad line", () => {
    const { code, stdout, errLines } = run("sequence = 1,2\n[ok]\n[bad\n");
    assert.equal(code, 65);
    assert.equal(stdout, "");
    assert.deepEqual(errLines, [
      `knockd.conf:1: syntax error: "sequence = 1,2" is outside any section; start with [options] or a [door]`,
      `knockd.conf:3: syntax error: section header "[bad" has no closing "]"`,
    ]);
  });

  test("no file, two files or an unknown option exit 64 with the usage", () => {
    for (const args of [[], ["a.conf", "b.conf"], ["--frobnicate", "knockd.conf"]]) {
      const { code, stderr } = run("", args);
      assert.equal(code, 64, `args ${JSON.stringify(args)}`);
      assert.match(stderr, /usage: knockgate convert \[--force\] FILE/);
    }
  });

  test("--help prints the usage on stdout and exits 0", () => {
    const { code, stdout } = run("", ["--help"]);
    assert.equal(code, 0);
    assert.match(stdout, /^usage: knockgate convert \[--force\] FILE\n/);
  });
});
