/**
 * fwknopd access.conf -> knockgate env file: each SOURCE stanza becomes a signed door. Pure: parsed
 * stanzas in, text and a list of issues out. Anything the conversion cannot express is returned as
 * a problem with its line number, never dropped silently.
 */
import { parseConfig } from "../../config/config.js";
import { parseEnvFile } from "../../config/env-file.js";
import { isBase64Key } from "../../config/spa.js";
import { parsePorts } from "../../config/values.js";
import { splitList } from "../../core/lists.js";
import { ConfigError } from "../../core/errors.js";
import { hasPort, type PortSpec } from "../../core/types.js";
import { portsText } from "./door-section.js";
import type { AccessEntry, AccessStanza, ParsedAccessConf } from "./access-conf.js";
import type { ConfIssue } from "./knockd-conf.js";
import { sortIssues, type ConvertResult } from "./to-env.js";

// fwknopd's compiled-in defaults (fwknopd_common.h DEF_FW_ACCESS_TIMEOUT, DEF_MAX_FW_TIMEOUT and
// access.c's REQUIRE_SOURCE_ADDRESS "N"), written out so the door behaves as the stanza did.
const FWKNOPD_ACCESS_TIMEOUT = 30;
const FWKNOPD_MAX_FW_TIMEOUT = 300;

const HMAC_DIGESTS = new Map([
  ["SHA256", "sha256"],
  ["SHA384", "sha384"],
  ["SHA512", "sha512"],
]);

/** What each setting without a knockgate counterpart did, as the reason it is reported. */
const NOT_EXPRESSIBLE: Readonly<Record<string, string>> = {
  DESTINATION: "knockgate doors do not filter on the address the datagram was sent to",
  ACCESS_EXPIRE: "knockgate doors do not expire on a date; remove the door's variables then",
  ACCESS_EXPIRE_EPOCH: "knockgate doors do not expire on a date; remove the door's variables then",
  FORCE_NAT: "knockgate opens ports on this host only, it does not forward (NAT)",
  FORCE_SNAT: "knockgate opens ports on this host only, it does not forward (NAT)",
  FORCE_MASQUERADE: "knockgate opens ports on this host only, it does not forward (NAT)",
  DISABLE_DNAT: "knockgate opens ports on this host only, it does not forward (NAT)",
  FORWARD_ALL: "knockgate opens ports on this host only, it does not forward (NAT)",
  CMD_CYCLE_OPEN: "knockgate grants are set entries, not commands; a door's KNOCK_DOOR_<NAME>_ON_OPEN could run a command beside the grant",
  CMD_CYCLE_CLOSE: "knockgate grants are set entries, not commands; a door's KNOCK_DOOR_<NAME>_ON_CLOSE could run a command after it",
  CMD_CYCLE_TIMER: "knockgate grants are set entries, not commands",
  GPG_DECRYPT_ID: "knockgate reads Rijndael+HMAC datagrams only, not GnuPG ones",
  GPG_DECRYPT_PW: "knockgate reads Rijndael+HMAC datagrams only, not GnuPG ones",
  GPG_ALLOW_NO_PW: "knockgate reads Rijndael+HMAC datagrams only, not GnuPG ones",
  GPG_REQUIRE_SIG: "knockgate reads Rijndael+HMAC datagrams only, not GnuPG ones",
  GPG_IGNORE_SIG_VERIFY_ERROR: "knockgate reads Rijndael+HMAC datagrams only, not GnuPG ones",
  GPG_REMOTE_ID: "knockgate reads Rijndael+HMAC datagrams only, not GnuPG ones",
  GPG_FINGERPRINT_ID: "knockgate reads Rijndael+HMAC datagrams only, not GnuPG ones",
  GPG_HOME_DIR: "knockgate reads Rijndael+HMAC datagrams only, not GnuPG ones",
  GPG_EXE: "knockgate reads Rijndael+HMAC datagrams only, not GnuPG ones",
  "%include": "included files are not followed: convert each one on its own",
  "%include_folder": "included folders are not followed: convert each file on its own",
  "%include_keys": "keys from another file are not followed: put that file's KEY_BASE64 and HMAC_KEY_BASE64 into the stanza and convert again",
};

/** Settings that only matter where command messages are run, which knockgate never does. */
const COMMAND_SETTINGS = new Set(["CMD_EXEC_USER", "CMD_EXEC_GROUP", "CMD_SUDO_EXEC_USER", "CMD_SUDO_EXEC_GROUP"]);

const BOOL = /^[YyNn]/;
const isYes = (value: string): boolean => /^[Yy]/.test(value);

/** "tcp/22, udp/53" (fwknop's proto/port) into knockgate's ports, or the reason it cannot be. */
function readPortList(value: string): PortSpec[] | string {
  const items = splitList(value);
  const bad = items.find((item) => !/^(tcp|udp)\/[0-9]+$/i.test(item));
  if (items.length === 0 || bad !== undefined) return `"${bad ?? value}" is not proto/port (tcp/22, udp/53)`;
  try {
    return parsePorts(items.map((item) => item.split("/").reverse().join("/").toLowerCase()).join(","));
  } catch (err) {
    return (err as Error).message;
  }
}

const wholeSeconds = (value: string): number | undefined => (/^[0-9]+$/.test(value) ? Number(value) : undefined);

/** Door names for the stanzas: FWKNOP, then FWKNOP_2, FWKNOP_3... */
const doorName = (index: number): string => (index === 0 ? "FWKNOP" : `FWKNOP_${index + 1}`);

export function convertAccessConf(conf: ParsedAccessConf, source = "access.conf"): ConvertResult {
  const problems: ConfIssue[] = [];
  const notes: ConfIssue[] = [];
  const warnings: ConfIssue[] = [];
  const out: string[] = [
    `# knockgate environment converted from ${source} by "knockgate convert".`,
    "# Each value runs to the end of its line, as docker --env-file and systemd EnvironmentFile read it.",
    "# Each SOURCE stanza is a signed door; its keys are the same KEY_BASE64 and HMAC_KEY_BASE64, so",
    "# fwknop clients keep working unchanged (the door listens on 62201/udp, fwknopd's default port).",
  ];
  notes.push({
    line: 0,
    message:
      "fwknopd.conf is not read: if it moves the SPA port (PCAP_FILTER, UDPSERV_PORT; 62201 by default) or the age limit (MAX_SPA_PACKET_AGE, 120 s), set each door's _SPA_PORT or _SPA_MAX_AGE to match",
  });
  for (const entry of conf.outside) {
    notes.push({ line: entry.line, message: `${entry.key} before the first SOURCE — fwknopd ignores it too` });
  }
  if (conf.stanzas.length === 0) problems.push({ line: 0, message: "no SOURCE stanza — fwknopd refuses an access.conf without one; nothing to convert" });
  conf.stanzas.forEach((stanza, i) => {
    const lines = convertStanza(stanza, doorName(i), problems, notes, warnings);
    if (lines.length === 0) return;
    out.push("", ...lines);
    // The daemon's own parser has the last word (key sizes, two equal keys...).
    try {
      parseConfig(parseEnvFile(lines.join("\n"), source).env, () => "");
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const p of err.problems) problems.push({ line: stanza.source.line, message: `${p.variable} ${p.message} — knockgate refuses this door as converted` });
    }
  });
  if (problems.length > 0) {
    out.push("", `# NOT CONVERTED from ${source} (knockgate convert exits 1 for these unless --force):`);
    for (const p of sortIssues(problems)) out.push(`# line ${p.line}: ${p.message}`);
  }
  return { env: `${out.join("\n")}\n`, problems: sortIssues(problems), notes: sortIssues(notes), warnings: sortIssues(warnings) };
}

/** The env lines of one stanza, or none when it cannot make a working door (each reason reported). */
function convertStanza(stanza: AccessStanza, name: string, problems: ConfIssue[], notes: ConfIssue[], warnings: ConfIssue[]): string[] {
  const at = stanza.source.line;
  const lines: string[] = [`# door ${name}: the SOURCE stanza at line ${at}`];
  const set = (field: string, value: string | number, comment: string): void => {
    lines.push(comment, `KNOCK_DOOR_${name}_${field}=${value}`);
  };
  const from = (entry: AccessEntry, what = entry.key): string => `# from line ${entry.line}: ${what}`;
  // Later lines replace earlier ones, as fwknopd's add_acc_string does.
  const last = new Map<string, AccessEntry>();
  for (const entry of stanza.entries) {
    const value = entry.key === "KEY" || entry.key === "HMAC_KEY" ? entry.value : entry.value.trim();
    if (value === "") {
      notes.push({ line: entry.line, message: `${entry.key} has no value — fwknopd skips the line too` });
      continue;
    }
    last.set(entry.key === "REQUIRE_SOURCE" ? "REQUIRE_SOURCE_ADDRESS" : entry.key, { ...entry, value });
  }

  const sourceValue = stanza.source.value.trim();
  if (sourceValue.toUpperCase() !== "ANY") {
    problems.push({
      line: at,
      message: `SOURCE ${sourceValue} — a knockgate door takes a signed datagram from any address (KNOCK_ALLOW is something else: addresses that bypass every door); the door accepts every source`,
    });
  }

  let usable = true;
  const key = secretKey(last.get("KEY_BASE64"), last.get("KEY"), "KEY", problems, notes);
  const hmacKey = secretKey(last.get("HMAC_KEY_BASE64"), last.get("HMAC_KEY"), "HMAC_KEY", problems, notes);
  if (key === undefined) {
    if (!last.has("KEY_BASE64") && !last.has("KEY")) problems.push({ line: at, message: "the stanza has no KEY_BASE64 (nor KEY) — knockgate doors need a Rijndael key; not converted" });
    usable = false;
  }
  if (hmacKey === undefined) {
    if (!last.has("HMAC_KEY_BASE64") && !last.has("HMAC_KEY")) {
      problems.push({
        line: at,
        message: "the stanza has no HMAC_KEY_BASE64 — fwknopd took datagrams without an HMAC, a knockgate door requires one: make keys with fwknop --key-gen and give clients --use-hmac; not converted",
      });
    }
    usable = false;
  }
  const mode = last.get("ENCRYPTION_MODE");
  if (mode !== undefined && mode.value.toLowerCase() !== "cbc") {
    problems.push({ line: mode.line, message: `ENCRYPTION_MODE ${mode.value} — knockgate reads the default mode, CBC, only; not converted` });
    usable = false;
  }
  if (!usable) return [];

  set("SPA_KEY", key!.value, from(key!.entry, key!.entry.key === "KEY" ? "KEY, the passphrase's bytes in base64 (what the client's --key-rijndael encrypts with)" : "KEY_BASE64"));
  set("SPA_HMAC_KEY", hmacKey!.value, from(hmacKey!.entry, hmacKey!.entry.key === "HMAC_KEY" ? "HMAC_KEY, the passphrase's bytes in base64" : "HMAC_KEY_BASE64"));

  const digest = last.get("HMAC_DIGEST_TYPE");
  if (digest !== undefined) {
    const known = HMAC_DIGESTS.get(digest.value.toUpperCase());
    if (known !== undefined) set("SPA_HMAC_DIGEST", known, from(digest));
    else problems.push({ line: digest.line, message: `HMAC_DIGEST_TYPE ${digest.value} — knockgate verifies SHA256, SHA384 or SHA512 HMACs; the door keeps SHA256, so clients must use --hmac-digest-type sha256` });
  }

  const open = last.get("OPEN_PORTS");
  const restrict = last.get("RESTRICT_PORTS");
  let ports: PortSpec[] | undefined;
  if (open === undefined) {
    problems.push({
      line: at,
      message: `the stanza has no OPEN_PORTS — fwknopd opened whatever port a client asked for${restrict ? " outside RESTRICT_PORTS" : ""}; a knockgate door opens only its KNOCK_DOOR_${name}_PORTS (default 22/tcp): set it to the ports clients ask for`,
    });
  } else {
    const read = readPortList(open.value);
    if (typeof read === "string") problems.push({ line: open.line, message: `OPEN_PORTS: ${read} — not converted, the door keeps knockgate's default 22/tcp` });
    else ports = read;
  }
  if (restrict !== undefined && ports !== undefined) {
    const refused = readPortList(restrict.value);
    if (typeof refused === "string") {
      problems.push({ line: restrict.line, message: `RESTRICT_PORTS: ${refused} — not converted` });
    } else {
      // OPEN_PORTS without RESTRICT_PORTS is exactly what fwknopd allowed.
      const allowed: PortSpec[] = ports.filter((p) => !hasPort(refused, p));
      notes.push({ line: restrict.line, message: "RESTRICT_PORTS — taken out of OPEN_PORTS" });
      if (allowed.length === 0) problems.push({ line: restrict.line, message: "RESTRICT_PORTS refuses every port of OPEN_PORTS — the door would open nothing; not converted" });
      ports = allowed.length > 0 ? allowed : undefined;
    }
  } else if (restrict !== undefined) {
    problems.push({ line: restrict.line, message: "RESTRICT_PORTS without OPEN_PORTS — a knockgate door lists the ports it opens, not the ones it refuses" });
  }
  if (ports !== undefined) set("PORTS", portsText(ports), from(open!, restrict ? "OPEN_PORTS less RESTRICT_PORTS" : "OPEN_PORTS"));

  const seconds = (setting: string, field: string, fallback: number, what: string): void => {
    const entry = last.get(setting);
    const value = entry === undefined ? fallback : wholeSeconds(entry.value);
    if (entry !== undefined && value === undefined) problems.push({ line: entry.line, message: `${setting} ${entry.value} is not a whole number of seconds — not converted, fwknopd's default ${fallback} is used` });
    // fwknopd reads 0 as "not set" too.
    set(field, value === undefined || value === 0 ? fallback : value, entry && value ? from(entry, what) : `# the stanza sets no ${setting}: fwknopd's default is ${fallback} s`);
  };
  seconds("FW_ACCESS_TIMEOUT", "OPEN_FOR", FWKNOPD_ACCESS_TIMEOUT, "FW_ACCESS_TIMEOUT, seconds a grant lasts when the client asks for none");
  seconds("MAX_FW_TIMEOUT", "SPA_MAX_OPEN_FOR", FWKNOPD_MAX_FW_TIMEOUT, "MAX_FW_TIMEOUT, the cap on what a client asks for with -f");

  const requireSource = last.get("REQUIRE_SOURCE_ADDRESS");
  if (requireSource !== undefined && !BOOL.test(requireSource.value)) {
    problems.push({ line: requireSource.line, message: `REQUIRE_SOURCE_ADDRESS ${requireSource.value} is not Y or N — not converted, the door requires an address` });
  } else if (requireSource !== undefined && isYes(requireSource.value)) {
    set("SPA_REQUIRE_SOURCE_ADDRESS", "true", from(requireSource));
  } else {
    // fwknopd's default takes -s; knockgate's refuses it. Keep what the clients use today.
    set(
      "SPA_REQUIRE_SOURCE_ADDRESS",
      "false",
      requireSource ? from(requireSource) : "# the stanza sets no REQUIRE_SOURCE_ADDRESS: fwknopd then takes -s (0.0.0.0, the datagram's source)",
    );
    warnings.push({
      line: requireSource?.line ?? at,
      message: `KNOCK_DOOR_${name}_SPA_REQUIRE_SOURCE_ADDRESS=false, as fwknopd ${requireSource ? "was told" : "defaults to"} — knockgate's default is on (clients name their address with -a, so a datagram seen on the way opens nothing for whoever sends it first), and KNOCK_CLUSTER=kubernetes refuses false; set it to true once clients stop using -s`,
    });
  }
  const username = last.get("REQUIRE_USERNAME");
  if (username !== undefined) set("SPA_REQUIRE_USERNAME", username.value, from(username));

  const handled = new Set(["KEY", "KEY_BASE64", "HMAC_KEY", "HMAC_KEY_BASE64", "HMAC_DIGEST_TYPE", "ENCRYPTION_MODE", "OPEN_PORTS", "RESTRICT_PORTS", "FW_ACCESS_TIMEOUT", "MAX_FW_TIMEOUT", "REQUIRE_SOURCE_ADDRESS", "REQUIRE_USERNAME"]);
  for (const [k, entry] of last) {
    if (handled.has(k)) continue;
    const reason = NOT_EXPRESSIBLE[k];
    if (k === "ENABLE_CMD_EXEC") {
      if (isYes(entry.value)) problems.push({ line: entry.line, message: "ENABLE_CMD_EXEC Y — knockgate never runs commands from the network; command datagrams are refused and counted" });
    } else if (COMMAND_SETTINGS.has(k)) {
      notes.push({ line: entry.line, message: `${k} — not applicable: knockgate never runs commands from the network` });
    } else if (k === "DESTINATION" && entry.value.toUpperCase() === "ANY") {
      // What every knockgate door does.
    } else if (k.startsWith("GPG_") && reason !== undefined && !["GPG_DECRYPT_PW", "GPG_ALLOW_NO_PW"].includes(k)) {
      notes.push({ line: entry.line, message: `${k} — not applicable: ${reason}` });
    } else if (reason !== undefined) {
      problems.push({ line: entry.line, message: `${k} ${entry.value} — ${reason}` });
    } else {
      notes.push({ line: entry.line, message: `${k} — fwknopd ignores an unknown setting too` });
    }
  }
  return lines;
}

/** The door's value for a key from its base64 or passphrase form, or undefined (reported). */
function secretKey(
  base64: AccessEntry | undefined,
  passphrase: AccessEntry | undefined,
  name: "KEY" | "HMAC_KEY",
  problems: ConfIssue[],
  notes: ConfIssue[],
): { value: string; entry: AccessEntry } | undefined {
  const entry = base64 ?? passphrase;
  if (entry === undefined) return undefined;
  if (entry.value.toUpperCase() === "__CHANGEME__") {
    problems.push({ line: entry.line, message: `${entry.key} is still __CHANGEME__ — fwknopd refuses to start with it too; make keys with fwknop --key-gen; not converted` });
    return undefined;
  }
  if (base64 !== undefined) {
    if (passphrase !== undefined) notes.push({ line: passphrase.line, message: `${name} — ${name}_BASE64 is used, as fwknopd does` });
    if (!isBase64Key(base64.value)) {
      problems.push({ line: base64.line, message: `${base64.key} is not base64 — fwknopd refuses it too; not converted` });
      return undefined;
    }
    return { value: base64.value, entry };
  }
  // libfko encrypts with the passphrase's bytes as the key, so their base64 is the same key.
  notes.push({ line: entry.line, message: `${name} is a passphrase — converted to the base64 of its bytes, the same key; random keys from fwknop --key-gen are stronger` });
  return { value: Buffer.from(entry.value, "utf8").toString("base64"), entry };
}
