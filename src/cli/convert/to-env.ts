/**
 * knockd.conf -> knockgate env file. Pure: parsed sections in, text and a list of issues out.
 * Anything the conversion cannot express is returned as a problem with its line number, never
 * dropped silently.
 */
import { sameSequence, sequenceClashes } from "../../config/config.js";
import { MAX_DOOR_NAME, type PortSpec } from "../../core/types.js";
import { portsText, readDoor, type Draft, type Valued } from "./door-section.js";
import { stripComment, type ConfIssue, type KnockdEntry, type ParsedConf } from "./knockd-conf.js";

export interface ConvertResult {
  /** The env file: KEY=value lines with "#" comments naming the knockd.conf origin of each. */
  env: string;
  /** What could not be expressed: the caller must fail unless the user accepts the loss. */
  problems: ConfIssue[];
  /** Informational: settings without a knockgate counterpart that change nothing that matters. */
  notes: ConfIssue[];
  /** Converted as asked, but weaker than knockgate's default or refused in some modes: said out loud. */
  warnings: ConfIssue[];
}

// knockd's compiled-in defaults (knockd.c SEQ_TIMEOUT, CMD_TIMEOUT): knockgate's differ, so the
// conversion writes them out explicitly instead of leaving them to knockgate's defaults.
const KNOCKD_SEQ_TIMEOUT = 25;
const KNOCKD_CMD_TIMEOUT = 10;

// tcp is knockgate's default protocol too, so only udp keeps its suffix.
const sequenceText = (specs: readonly PortSpec[]): string =>
  specs.map((p) => (p.proto === "tcp" ? `${p.port}` : `${p.port}:${p.proto}`)).join(",");

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
  return { env: `${out.join("\n")}\n`, problems: sortIssues(problems), notes: sortIssues(notes), warnings: [] };
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

export const sortIssues = (issues: ConfIssue[]): ConfIssue[] => [...issues].sort((a, b) => a.line - b.line);

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
  const sequences = doors.flatMap((door) => [door.open, door.close]).flatMap((d) => (d?.sequence ? [{ section: d.section, ...d.sequence }] : []));
  for (const [clash, first] of sequenceClashes(sequences, (s) => s.value)) {
    problems.push({
      line: clash.line,
      message: `sequence ${sequenceText(clash.value)} is also the sequence of [${first.section.name}] — knockgate refuses two doors on one sequence`,
    });
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
    if (sameSequence(close.sequence.value, sequence.value)) {
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
