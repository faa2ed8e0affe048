/**
 * The knockd.conf reader. Pure: text in, sections and entries out.
 *
 * The parser follows knockd's own (knockd.c parseconfig): one directive per line, keys
 * case-insensitive, "key = value" split at the first "=", "#" only at the start of a line, and a
 * bare "UseSyslog" as the one key without a value.
 */
import { KnockError } from "../../core/errors.js";

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

export class KnockdConfSyntaxError extends KnockError {
  constructor(readonly errors: readonly ConfIssue[]) {
    super("KNOCK_E_CONFIG", errors.map((e) => `line ${e.line}: ${e.message}`).join("\n"));
    this.name = "KnockdConfSyntaxError";
  }
}

// knockd parses numbers with atoi, which stops at a trailing "# comment"; strip one the same way.
export const stripComment = (value: string): string => value.replace(/\s+#.*$/, "");

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
