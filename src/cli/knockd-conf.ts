/**
 * knockd.conf -> knockgate env file. Pure: text in, text and a list of issues out.
 *
 * The parser follows knockd's own (knockd.c parseconfig): one directive per line, keys
 * case-insensitive, "key = value" split at the first "=", "#" only at the start of a line, and a
 * bare "UseSyslog" as the one key without a value. Anything the conversion cannot express is
 * returned as a problem with its line number, never dropped silently.
 */
import { KnockError } from "../core/errors.js";
import { findShellSyntax, splitShellWords, ShellWordsError } from "../config/shellwords.js";
import type { PortSpec, Proto } from "../core/types.js";

export interface KnockdEntry {
  /** Lower-cased, as knockd compares keys case-insensitively. */
  key: string;
  /** Trimmed text after the first "="; undefined for a bare word such as UseSyslog. */
  value: string | undefined;
  line: number;
}

export interface KnockdSection {
  /** As written between the brackets (trimmed). */
  name: string;
  line: number;
  entries: KnockdEntry[];
}

export interface ParsedConf {
  /** Entries of every [options] section, in file order. */
  options: KnockdEntry[];
  /** Every other section: each one is a knockd "door". */
  doors: KnockdSection[];
}

/** One finding tied to a line of knockd.conf; line 0 is the file as a whole. */
export interface ConfIssue {
  line: number;
  message: string;
}

export interface ConvertResult {
  /** The env file: KEY=value lines with "#" comments naming the knockd.conf origin of each. */
  env: string;
  /** What could not be expressed: the caller must fail unless the user accepts the loss. */
  problems: ConfIssue[];
  /** Informational: settings without a knockgate counterpart that change nothing that matters. */
  notes: ConfIssue[];
}

export class KnockdConfSyntaxError extends KnockError {
  constructor(readonly errors: readonly ConfIssue[]) {
    super("KNOCK_E_CONFIG", errors.map((e) => `line ${e.line}: ${e.message}`).join("\n"));
    this.name = "KnockdConfSyntaxError";
  }
}

// knockd's compiled-in defaults (knockd.c SEQ_TIMEOUT, CMD_TIMEOUT): knockgate's differ, so the
// conversion writes them out explicitly instead of leaving them to knockgate's defaults.
const KNOCKD_SEQ_TIMEOUT = 25;
const KNOCKD_CMD_TIMEOUT = 10;
/** config.ts MAX_DOOR_NAME: ipset set names carry the door name. */
const MAX_DOOR_NAME = 19;

/** Throws KnockdConfSyntaxError listing every line knockd itself would refuse to read. */
export function parseKnockdConf(text: string): ParsedConf {
  const conf: ParsedConf = { options: [], doors: [] };
  const errors: ConfIssue[] = [];
  let current: KnockdEntry[] | undefined;
  text
    .replace(/^\uFEFF/, "")
    .split(/\r?\n/)
    .forEach((raw, index) => {
      const line = index + 1;
      const t = raw.trim();
      if (t === "" || t.startsWith("#")) return;
      if (t.startsWith("[")) {
        if (!t.endsWith("]")) {
          errors.push({ line, message: `section header "${t}" has no closing "]"` });
          current = undefined;
          return;
        }
        const name = t.slice(1, -1).trim();
        if (name === "") {
          errors.push({ line, message: "empty section name []" });
          current = undefined;
          return;
        }
        // knockd matches "options" case-sensitively; a door named [Options] would be absurd.
        if (name.toLowerCase() === "options") {
          current = conf.options;
        } else {
          const section: KnockdSection = { name, line, entries: [] };
          conf.doors.push(section);
          current = section.entries;
        }
        return;
      }
      if (current === undefined) {
        errors.push({ line, message: `"${t}" is outside any section; start with [options] or a [door]` });
        return;
      }
      const eq = t.indexOf("=");
      const key = (eq < 0 ? t : t.slice(0, eq)).trim().toLowerCase();
      if (key === "") {
        errors.push({ line, message: `"${t}" has no key before "="` });
        return;
      }
      current.push({ key, value: eq < 0 ? undefined : t.slice(eq + 1).trim(), line });
    });
  if (errors.length > 0) throw new KnockdConfSyntaxError(errors);
  return conf;
}

// ---- iptables rules ---------------------------------------------------------------------------

export interface IptablesRule {
  /** -A/-I make a grant, -D revokes it. */
  op: "grant" | "revoke";
  ports: PortSpec[];
}

const IPTABLES = /^ip6?tables(?:-legacy|-nft)?$/;
const KNOCKER = new Set(["%IP%", "%IP%/32", "%IP%/128"]);

/**
 * Reads argv as the usual knockd grant `iptables -A|-I INPUT [n] -s %IP% -p tcp|udp --dport N
 * -j ACCEPT` (or its -D revoke). Returns the rule, or why it is not one: only such a rule means
 * exactly "let the knocker reach these ports", which is what knockgate's _PORTS does.
 */
export function parseIptablesRule(argv: readonly string[]): IptablesRule | string {
  const program = argv[0]?.split("/").pop() ?? "";
  if (!IPTABLES.test(program)) return `${argv[0] ?? "(empty)"} is not iptables`;
  let op: IptablesRule["op"] | undefined;
  let chain: string | undefined;
  let source: string | undefined;
  let proto: string | undefined;
  let target: string | undefined;
  let ports: string[] | undefined;
  const matches: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = (): string => argv[++i] ?? "";
    switch (a) {
      case "-w":
      case "--wait":
        if (/^\d+$/.test(argv[i + 1] ?? "")) i++;
        break;
      case "-W":
      case "--wait-interval":
        value();
        break;
      case "-t":
      case "--table": {
        const table = value();
        if (table !== "filter") return `it changes the ${table} table, not a filter rule`;
        break;
      }
      case "-A":
      case "--append":
      case "-I":
      case "--insert":
      case "-D":
      case "--delete":
        if (op !== undefined) return "it has two commands";
        op = a === "-D" || a === "--delete" ? "revoke" : "grant";
        chain = value();
        // -I takes an optional rule number; -D with a number deletes by position, not by match.
        if ((a === "-I" || a === "--insert") && /^\d+$/.test(argv[i + 1] ?? "")) i++;
        break;
      case "-s":
      case "--source":
      case "--src":
        source = value();
        break;
      case "-p":
      case "--protocol":
        proto = value().toLowerCase();
        break;
      case "-m":
      case "--match":
        matches.push(value().toLowerCase());
        break;
      case "--dport":
      case "--destination-port":
        ports = [value()];
        break;
      case "--dports":
      case "--destination-ports":
        if (!matches.includes("multiport")) return `${a} needs -m multiport`;
        ports = value().split(",");
        break;
      case "-j":
      case "--jump":
        target = value();
        break;
      default:
        return `"${a}" has no knockgate equivalent`;
    }
  }
  if (op === undefined) return "it neither adds (-A/-I) nor deletes (-D) a rule";
  if (chain !== "INPUT") return `it works on chain ${chain ?? "(none)"}, not INPUT`;
  if (source === undefined || !KNOCKER.has(source)) return "it is not limited to the knocker's address (-s %IP%)";
  if (target !== "ACCEPT") return `its target is ${target ?? "(none)"}, not ACCEPT`;
  if (ports === undefined) return "it opens every port (no --dport)";
  if (proto === undefined) return "--dport without -p tcp|udp: iptables rejects this rule, so knockd never opened the port";
  if (proto !== "tcp" && proto !== "udp") return `protocol ${proto} is not tcp or udp`;
  const unknownMatch = matches.find((m) => m !== proto && m !== "multiport");
  if (unknownMatch !== undefined) return `match -m ${unknownMatch} has no knockgate equivalent`;
  const specs: PortSpec[] = [];
  for (const p of ports) {
    if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65535) return `"${p}" is not a single port (ranges do not convert)`;
    specs.push({ port: Number(p), proto });
  }
  return { op, ports: specs };
}

// ---- door values ------------------------------------------------------------------------------

const portsText = (ports: readonly PortSpec[]): string =>
  [...new Set(ports.map((p) => `${p.port}/${p.proto}`))].sort().join(",");

// knockd parses numbers with atoi, which stops at a trailing "# comment"; strip one the same way.
const stripComment = (value: string): string => value.replace(/\s+#.*$/, "");

function parseSequence(value: string): PortSpec[] | string {
  const specs: PortSpec[] = [];
  for (const item of stripComment(value).split(",")) {
    const m = /^\s*(\d+)\s*(?::\s*([A-Za-z]+)\s*)?$/.exec(item);
    const port = Number(m?.[1]);
    const proto = (m?.[2] ?? "tcp").toLowerCase();
    if (!m || port < 1 || port > 65535) return `"${item.trim()}" is not PORT or PORT:tcp|udp`;
    if (proto !== "tcp" && proto !== "udp") return `"${item.trim()}": protocol ${m[2]} is not tcp or udp`;
    specs.push({ port, proto: proto as Proto });
  }
  return specs;
}

// tcp is knockgate's default protocol too, so only udp keeps its suffix.
const sequenceText = (specs: readonly PortSpec[]): string =>
  specs.map((p) => (p.proto === "tcp" ? `${p.port}` : `${p.port}:${p.proto}`)).join(",");

const FLAGS = ["fin", "syn", "rst", "psh", "ack", "urg"];

function parseTcpFlags(value: string): string | { error: string } {
  const items = stripComment(value).split(",").map((s) => s.trim().toLowerCase());
  const seen = new Map<string, boolean>();
  for (const item of items) {
    const name = item.replace(/^!/, "");
    if (!FLAGS.includes(name)) return { error: `"${item}" is not a TCP flag (${FLAGS.join(", ")}, each optionally with "!")` };
    const wanted = !item.startsWith("!");
    if (seen.get(name) === !wanted) return { error: `flag ${name} is both required and forbidden` };
    seen.set(name, wanted);
  }
  return [...new Set(items)].join(",");
}

function parseSeconds(value: string): number | undefined {
  const text = stripComment(value);
  return /^\d+$/.test(text) ? Number(text) : undefined;
}

// ---- commands ---------------------------------------------------------------------------------

type Command =
  | { kind: "grant" | "revoke"; ports: PortSpec[]; text: string; key: string; line: number }
  | { kind: "custom"; text: string; key: string; line: number; why: string };

/** A command that cannot run without a shell: the door it belongs to is not converted. */
const BROKEN = "broken";

function readCommand(entry: KnockdEntry, value: string, where: string, problems: ConfIssue[]): Command | typeof BROKEN | undefined {
  let text = value;
  try {
    for (;;) {
      const found = findShellSyntax(text);
      if (found === undefined) break;
      // sh ignores a trailing comment, and so may we.
      if (found.construct === "comment #") {
        text = text.slice(0, found.index).trimEnd();
        continue;
      }
      problems.push({
        line: entry.line,
        message: `${entry.key} uses shell syntax (${found.construct}) — knockgate runs commands without a shell, so door ${where} is not converted; put the command in a script and call the script`,
      });
      return BROKEN;
    }
  } catch (err) {
    if (!(err instanceof ShellWordsError)) throw err;
    problems.push({ line: entry.line, message: `${entry.key} cannot be split into words (${err.message}) — door ${where} is not converted` });
    return BROKEN;
  }
  const argv = splitShellWords(text);
  if (argv.length === 0) return undefined; // an empty command: knockd runs nothing
  const rule = parseIptablesRule(argv);
  if (typeof rule !== "string") return { kind: rule.op, ports: rule.ports, text, key: entry.key, line: entry.line };
  return { kind: "custom", text, key: entry.key, line: entry.line, why: IPTABLES.test(argv[0]?.split("/").pop() ?? "") ? rule : "" };
}

function sameEffect(a: Command, b: Command): boolean {
  if (a.kind === "custom" || b.kind === "custom") return a.text === b.text;
  return a.kind === b.kind && portsText(a.ports) === portsText(b.ports);
}

// ---- doors ------------------------------------------------------------------------------------

interface Valued<T> {
  value: T;
  line: number;
}

interface Draft {
  section: KnockdSection;
  sequence?: Valued<PortSpec[]>;
  seqTimeout?: Valued<number>;
  tcpflags?: Valued<string>;
  cmdTimeout?: Valued<number>;
  start?: Command;
  stop?: Command;
  broken: boolean;
}

/** Reads one door section; reports each entry knockgate cannot express. */
function readDoor(section: KnockdSection, problems: ConfIssue[], notes: ConfIssue[]): Draft {
  const draft: Draft = { section, broken: false };
  const seen = new Map<string, number>();
  const v6: KnockdEntry[] = [];
  const where = `[${section.name}]`;
  for (const entry of section.entries) {
    const { key, value, line } = entry;
    const earlier = seen.get(key);
    if (earlier !== undefined) notes.push({ line, message: `${key} repeats line ${earlier} — the later value wins, as in knockd` });
    seen.set(key, line);
    if (value === undefined) {
      if (key === "usesyslog") notes.push({ line, message: "UseSyslog — not applicable: knockgate logs JSON lines to standard output" });
      else problems.push({ line, message: `"${key}" without "= value" — knockd rejects this line too` });
      continue;
    }
    const problem = (message: string): void => {
      problems.push({ line, message });
    };
    switch (key) {
      case "sequence": {
        const seq = parseSequence(value);
        if (typeof seq === "string") problem(`sequence ${seq} — door ${where} is not converted`);
        else draft.sequence = { value: seq, line };
        break;
      }
      case "one_time_sequences":
        problem(`one_time_sequences = ${value} — knockgate has only a fixed sequence per door; without a sequence line the door is not converted`);
        break;
      case "seq_timeout":
      case "timeout": {
        const seconds = parseSeconds(value);
        if (seconds === undefined) problem(`${key} = ${value} — not a whole number of seconds`);
        else if (seconds === 0) problem(`${key} = 0 — knockgate needs a sequence timeout of at least 1 second`);
        else draft.seqTimeout = { value: seconds, line };
        break;
      }
      case "tcpflags": {
        const flags = parseTcpFlags(value);
        if (typeof flags === "string") draft.tcpflags = { value: flags, line };
        else problem(`tcpflags = ${value} — ${flags.error}`);
        break;
      }
      case "cmd_timeout": {
        const seconds = parseSeconds(value);
        if (seconds === undefined) problem(`cmd_timeout = ${value} — not a whole number of seconds`);
        else draft.cmdTimeout = { value: seconds, line };
        break;
      }
      case "start_command":
      case "command":
      case "stop_command": {
        const command = readCommand(entry, value, where, problems);
        if (command === BROKEN) draft.broken = true;
        else if (key === "stop_command") draft.stop = command;
        else draft.start = command;
        break;
      }
      case "start_command_6":
      case "command_6":
      case "stop_command_6":
        v6.push(entry);
        break;
      case "target":
        problem(`target = ${value} — knockgate only counts knocks addressed to this host itself`);
        break;
      default:
        problem(`unknown directive "${key}" — knockd rejects it too; not converted`);
    }
  }
  // knockgate runs one door for both address families: an IPv6 command only converts when it has
  // the same effect as its IPv4 counterpart (typically the ip6tables twin of an iptables rule).
  for (const entry of v6) {
    const twin = entry.key === "stop_command_6" ? draft.stop : draft.start;
    const mine = readCommand(entry, entry.value ?? "", where, problems);
    if (mine === BROKEN) {
      draft.broken = true;
    } else if (mine === undefined) {
      problems.push({ line: entry.line, message: `empty ${entry.key} — knockd ignored IPv6 knocks here; knockgate opens for IPv4 and IPv6 alike` });
    } else if (twin === undefined || !sameEffect(mine, twin)) {
      problems.push({
        line: entry.line,
        message: `${entry.key} does something else than its IPv4 command — knockgate has one door for IPv4 and IPv6`,
      });
    }
  }
  if (draft.sequence === undefined && !seen.has("sequence") && !seen.has("one_time_sequences")) {
    problems.push({ line: section.line, message: `door ${where} has no sequence — nothing to convert` });
  }
  if (draft.cmdTimeout !== undefined && draft.stop === undefined) {
    notes.push({ line: draft.cmdTimeout.line, message: "cmd_timeout without stop_command — it had no effect in knockd either" });
  }
  return draft;
}

/** Door name rule: uppercase, anything outside [A-Z0-9_] becomes "_". */
const sanitize = (name: string): string => name.toUpperCase().replace(/[^A-Z0-9_]/g, "_");

/** [openSSH]+[closeSSH], [ssh-open]+[ssh-close]: the shared part names the door ("SSH"). */
function pairName(open: string, close: string): string {
  const o = open.toLowerCase();
  const c = close.toLowerCase();
  const at = o.indexOf("open");
  if (at >= 0 && o.replace("open", "\0") === c.replace("close", "\0")) {
    const base = sanitize(open.slice(0, at) + open.slice(at + 4)).replace(/^_+|_+$/g, "");
    if (base !== "") return base;
  }
  return sanitize(open);
}

interface Door {
  name: string;
  open: Draft;
  close?: Draft;
  lines: string[];
}

/**
 * Converts a parsed knockd.conf. `source` names the file in the env's comments.
 * See ConvertResult; an empty `problems` means the env does what knockd did.
 */
export function convertKnockdConf(conf: ParsedConf, source = "knockd.conf"): ConvertResult {
  const problems: ConfIssue[] = [];
  const notes: ConfIssue[] = [];
  const out: string[] = [
    `# knockgate environment converted from ${source} by "knockgate convert".`,
    "# Each value runs to the end of its line, as docker --env-file and systemd EnvironmentFile read it.",
  ];

  // [options]
  let iface: KnockdEntry | undefined;
  for (const entry of conf.options) {
    const { key, value, line } = entry;
    if (key === "usesyslog" && value === undefined) {
      notes.push({ line, message: "UseSyslog — not applicable: knockgate logs JSON lines to standard output" });
    } else if (key === "logfile" && value !== undefined) {
      notes.push({ line, message: `LogFile = ${value} — not applicable: knockgate logs to standard output for the service manager` });
    } else if (key === "pidfile" && value !== undefined) {
      notes.push({ line, message: `PidFile = ${value} — not applicable: knockgate runs in the foreground and writes no pid file` });
    } else if (key === "interface" && value !== undefined && stripComment(value) !== "") {
      iface = entry;
    } else {
      problems.push({ line, message: `"${key}" in [options] — knockd rejects it too; not converted` });
    }
  }
  if (iface?.value !== undefined) {
    out.push("", `# from [options] at line ${iface.line}: Interface`, `KNOCK_INTERFACE=${stripComment(iface.value)}`);
  } else {
    notes.push({
      line: 0,
      message: "no Interface in [options] — knockd listened on eth0 unless started with -i; knockgate listens on the default-route interfaces unless KNOCK_INTERFACE is set",
    });
  }

  // Doors: classify each section by what its commands do.
  const drafts = conf.doors.map((s) => readDoor(s, problems, notes)).filter((d) => !d.broken && d.sequence !== undefined);
  const doors = buildDoors(drafts, problems);

  assignNames(doors, notes);
  checkSequenceClashes(doors, problems);
  for (const door of doors) {
    emitDoor(door, problems);
    out.push("", ...door.lines);
  }

  if (problems.length > 0) {
    out.push("", `# NOT CONVERTED from ${source} (knockgate convert exits 1 for these unless --force):`);
    for (const p of sortIssues(problems)) out.push(`# line ${p.line}: ${p.message}`);
  }
  return { env: `${out.join("\n")}\n`, problems: sortIssues(problems), notes: sortIssues(notes) };
}

/** Sorts sections into doors by what their commands do, pairing open and close sections. */
function buildDoors(drafts: readonly Draft[], problems: ConfIssue[]): Door[] {
  const singles: Draft[] = [];
  const openers: Draft[] = [];
  const closers: Draft[] = [];
  for (const d of drafts) {
    const { start, stop } = d;
    if (start === undefined) {
      problems.push({
        line: d.section.line,
        message: `door [${d.section.name}] has no start_command — knockd only logged the knock; a knockgate door always opens ports`,
      });
    } else if (start.kind === "grant" && stop === undefined) {
      openers.push(d);
    } else if (start.kind === "revoke" && stop === undefined) {
      closers.push(d);
    } else if (start.kind === "grant" && stop?.kind === "revoke" && portsText(stop.ports) !== portsText(start.ports)) {
      problems.push({
        line: stop.line,
        message: `${stop.key} revokes ${portsText(stop.ports)} but ${start.key} grants ${portsText(start.ports)} — knockd left the grant open; not converted`,
      });
    } else {
      singles.push(d);
    }
  }
  // A revoke-only section is the close half of knockd's open/close pair: knockgate expresses the
  // pair as one door with a close sequence. It closes a grant-only section (the tutorial's pair)
  // or, failing that, a timed one (start+stop_command), whose grant it then ends early.
  const closes = new Map<Draft, Draft>();
  const timed = singles.filter((d) => d.start?.kind === "grant" && d.stop?.kind === "revoke");
  for (const c of closers) {
    const ports = c.start?.kind === "revoke" ? portsText(c.start.ports) : "";
    const candidates = [...openers, ...timed].filter(
      (o) => !closes.has(o) && o.start?.kind === "grant" && portsText(o.start.ports) === ports,
    );
    const byName = candidates.find((o) => pairName(o.section.name, c.section.name) !== sanitize(o.section.name));
    const o = byName ?? candidates[0];
    if (o === undefined) {
      problems.push({
        line: c.start?.line ?? c.section.line,
        message: `door [${c.section.name}] only revokes ${ports} and no section grants it — not converted`,
      });
    } else {
      closes.set(o, c);
    }
  }
  return [...openers, ...singles]
    .sort((a, b) => a.section.line - b.section.line)
    .map((open) => {
      const close = closes.get(open);
      return close === undefined
        ? { name: sanitize(open.section.name), open, lines: [] }
        : { name: pairName(open.section.name, close.section.name), open, close, lines: [] };
    });
}

const sortIssues = (issues: ConfIssue[]): ConfIssue[] => [...issues].sort((a, b) => a.line - b.line);

/** Makes door names valid and unique for config.ts; renames are reported as notes. */
function assignNames(doors: Door[], notes: ConfIssue[]): void {
  const taken = new Set<string>();
  for (const door of doors) {
    const wanted = door.name;
    // KNOCK_DOOR_X_CLOSE_SEQUENCE would read as door X's close sequence.
    const fit = (text: string, room: number): string => text.slice(0, room).replace(/_CLOSE$/, "CLOSE");
    let name = fit(wanted, MAX_DOOR_NAME);
    for (let n = 2; taken.has(name); n++) name = `${fit(wanted, MAX_DOOR_NAME - `_${n}`.length)}_${n}`;
    taken.add(name);
    if (name !== wanted) {
      notes.push({ line: door.open.section.line, message: `door [${door.open.section.name}] is named ${name}, not ${wanted} — names must be unique, at most ${MAX_DOOR_NAME} characters, and not end in _CLOSE` });
    }
    door.name = name;
  }
}

/** knockd fires every door whose sequence matches; knockgate refuses two doors on one sequence. */
function checkSequenceClashes(doors: readonly Door[], problems: ConfIssue[]): void {
  const seen = new Map<string, string>();
  for (const door of doors) {
    for (const d of [door.open, door.close]) {
      if (d?.sequence === undefined) continue;
      const key = sequenceText(d.sequence.value);
      const other = seen.get(key);
      if (other !== undefined) {
        problems.push({ line: d.sequence.line, message: `sequence ${key} is also the sequence of ${other} — knockgate refuses two doors on one sequence` });
      } else {
        seen.set(key, `[${d.section.name}]`);
      }
    }
  }
}

function emitDoor(door: Door, problems: ConfIssue[]): void {
  const { open, close, lines } = door;
  const from = (d: Draft, line: number, what: string): string => `# from [${d.section.name}] at line ${line}: ${what}`;
  const set = (field: string, value: string | number, comment: string): void => {
    lines.push(comment, `KNOCK_DOOR_${door.name}_${field}=${value}`);
  };
  const seqTimeout = (d: Draft): number => d.seqTimeout?.value ?? KNOCKD_SEQ_TIMEOUT;
  const flags = (d: Draft): string => d.tcpflags?.value ?? "any";
  const sequence = open.sequence as Valued<PortSpec[]>;

  lines.push(
    close === undefined
      ? `# door ${door.name}: [${open.section.name}] at line ${open.section.line}`
      : `# door ${door.name}: [${open.section.name}] at line ${open.section.line} opens, [${close.section.name}] at line ${close.section.line} closes`,
  );
  set("SEQUENCE", sequenceText(sequence.value), from(open, sequence.line, "sequence"));
  if (close?.sequence !== undefined) {
    set("CLOSE_SEQUENCE", sequenceText(close.sequence.value), from(close, close.sequence.line, "sequence"));
    if (sequenceText(close.sequence.value) === sequenceText(sequence.value)) {
      problems.push({ line: close.sequence.line, message: `[${close.section.name}] closes with the opening sequence — knockgate needs two different sequences` });
    }
  }
  set(
    "SEQ_TIMEOUT",
    seqTimeout(open),
    open.seqTimeout ? from(open, open.seqTimeout.line, "seq_timeout") : `# [${open.section.name}] sets no seq_timeout: knockd's default is ${KNOCKD_SEQ_TIMEOUT} s`,
  );
  set(
    "TCPFLAGS",
    flags(open),
    open.tcpflags ? from(open, open.tcpflags.line, "tcpflags") : `# [${open.section.name}] sets no tcpflags: knockd then counts packets with any flags`,
  );
  if (close !== undefined) {
    // One door has one timeout and one flag filter for both of its sequences.
    if (seqTimeout(close) !== seqTimeout(open)) {
      problems.push({
        line: close.seqTimeout?.line ?? close.section.line,
        message: `[${close.section.name}] seq_timeout ${seqTimeout(close)} differs from [${open.section.name}]'s ${seqTimeout(open)} — knockgate uses ${seqTimeout(open)} for both sequences`,
      });
    }
    if (flags(close) !== flags(open)) {
      problems.push({
        line: close.tcpflags?.line ?? close.section.line,
        message: `[${close.section.name}] tcpflags ${flags(close)} differ from [${open.section.name}]'s ${flags(open)} — knockgate uses ${flags(open)} for both sequences`,
      });
    }
  }

  const { start, stop } = open;
  const cmdTimeout = open.cmdTimeout?.value ?? KNOCKD_CMD_TIMEOUT;
  const timeoutComment = open.cmdTimeout
    ? from(open, open.cmdTimeout.line, "cmd_timeout: stop_command ran this long after start_command")
    : `# [${open.section.name}] sets no cmd_timeout: knockd ran stop_command after its default ${KNOCKD_CMD_TIMEOUT} s`;
  if (start === undefined) return; // doors without a start_command were reported and never get here
  if (start.kind === "grant") {
    set("PORTS", portsText(start.ports), from(open, start.line, `the iptables grant in ${start.key}`));
    if (stop?.kind === "revoke") {
      set("OPEN_FOR", cmdTimeout, timeoutComment);
    } else if (close !== undefined) {
      set("OPEN_FOR", 0, from(close, close.start?.line ?? close.section.line, "the grant lasts until the close sequence revokes it"));
    } else if (stop !== undefined) {
      set("ON_CLOSE", stop.text, from(open, stop.line, stop.key));
      set("OPEN_FOR", cmdTimeout, timeoutComment);
      problems.push({
        line: stop.line,
        message: `stop_command does not revoke the grant — knockd left ${portsText(start.ports)} open; knockgate closes it after OPEN_FOR`,
      });
    } else {
      problems.push({
        line: start.line,
        message: `[${open.section.name}] grants ${portsText(start.ports)} and nothing revokes it — knockgate grants need an end: OPEN_FOR is left at knockgate's default`,
      });
    }
    return;
  }
  // Commands knockgate runs itself (with %IP% kept: knockgate substitutes the same token).
  set("ON_OPEN", start.text, from(open, start.line, start.key));
  if (stop !== undefined) {
    set("ON_CLOSE", stop.text, from(open, stop.line, stop.key));
    set("OPEN_FOR", cmdTimeout, timeoutComment);
  }
  const why = start.kind === "custom" && start.why !== "" ? ` (not read as a port grant: ${start.why})` : "";
  problems.push({
    line: start.line,
    message: `${start.key} opens no port itself${why} — a knockgate door also grants KNOCK_DOOR_${door.name}_PORTS (default 22/tcp): set it to what the command opens`,
  });
}
