/** Reads one knockd.conf door section: its values and commands, each problem tied to its line. */
import { findShellSyntax, splitShellWords, ShellWordsError } from "../../config/shellwords.js";
import { parseSequence, parseTcpFlags } from "../../config/values.js";
import { portName, type PortSpec } from "../../core/types.js";
import { isIptables, parseIptablesRule } from "./iptables-rule.js";
import { stripComment, type ConfIssue, type KnockdEntry, type KnockdSection } from "./knockd-conf.js";

// ---- door values: knockd's syntax, then knockgate's parsers -----------------------------------

export const portsText = (ports: readonly PortSpec[]): string =>
  [...new Set(ports.map(portName))].sort().join(",");

/** knockd reads "7000 : udp" as "7000:udp" (atoi for the port, then the trimmed protocol). */
const readSequence = (value: string): PortSpec[] => parseSequence(stripComment(value).replace(/\s*:\s*/g, ":"));

/**
 * Returns the flags as KNOCK_DOOR_<NAME>_TCPFLAGS writes them. knockd takes every item of the
 * list as a flag name: unlike knockgate it knows no "any" and refuses an empty item.
 */
function readTcpFlags(value: string): string {
  const items = stripComment(value).split(",").map((s) => s.trim().toLowerCase());
  const notFlag = items.find((item) => item === "" || item === "any");
  if (notFlag !== undefined) throw new Error(`"${notFlag}" is not a flag to knockd; leave tcpflags out to count packets with any flags`);
  parseTcpFlags(items.join(","));
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
  return { kind: "custom", text, key: entry.key, line: entry.line, why: isIptables(argv) ? rule : "" };
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
    /** Runs a value reader; its refusal becomes this line's problem, worded by `what`. */
    const read = <T>(reader: (text: string) => T, what: (reason: string) => string): T | undefined => {
      try {
        return reader(value);
      } catch (err) {
        problem(what((err as Error).message));
        return undefined;
      }
    };
    switch (key) {
      case "sequence": {
        const seq = read(readSequence, (why) => `sequence = ${value} — ${why}; door ${where} is not converted`);
        if (seq !== undefined) draft.sequence = { value: seq, line };
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
        const flags = read(readTcpFlags, (why) => `tcpflags = ${value} — ${why}`);
        if (flags !== undefined) draft.tcpflags = { value: flags, line };
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
