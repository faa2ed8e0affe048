/** Reads one knockd.conf door section: its values and commands, each problem tied to its line. */
import { findShellSyntax, splitShellWords, ShellWordsError } from "../../config/shellwords.js";
import type { PortSpec, Proto } from "../../core/types.js";
import { IPTABLES, parseIptablesRule } from "./iptables-rule.js";
import { stripComment, type ConfIssue, type KnockdEntry, type KnockdSection } from "./knockd-conf.js";

// ---- door values ------------------------------------------------------------------------------

export const portsText = (ports: readonly PortSpec[]): string =>
  [...new Set(ports.map((p) => `${p.port}/${p.proto}`))].sort().join(",");

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

export type Command =
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

export interface Valued<T> {
  value: T;
  line: number;
}

export interface Draft {
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
export function readDoor(section: KnockdSection, problems: ConfIssue[], notes: ConfIssue[]): Draft {
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
