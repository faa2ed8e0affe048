/**
 * The fwknopd access.conf reader. Pure: text in, stanzas out.
 *
 * The parser follows fwknopd's own (server/access.c parse_access_file): a line whose first
 * character is "#", ";" or the end of the line is skipped; otherwise the first word is the
 * variable (a trailing ":" dropped) and the value is what follows the blanks after it, up to a ";"
 * or the end of the line. Every stanza starts with SOURCE; lines before the first are ignored.
 */

export interface AccessEntry {
  /** As written: fwknopd compares variable names case-sensitively. */
  key: string;
  /** Up to ";" or the end of the line, leading blanks skipped, trailing ones kept as fwknopd keeps them. */
  value: string;
  line: number;
}

export interface AccessStanza {
  /** The SOURCE line. */
  source: AccessEntry;
  /** Every entry after SOURCE, in file order. */
  entries: AccessEntry[];
}

export interface ParsedAccessConf {
  stanzas: AccessStanza[];
  /** Lines before the first SOURCE (fwknopd ignores them) and lines it cannot read. */
  outside: AccessEntry[];
}

/**
 * Whether `text` reads as an fwknopd access.conf rather than a knockd.conf: a line starting with
 * SOURCE and no "[section]" header, which every knockd.conf needs.
 */
export function isAccessConf(text: string): boolean {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  return lines.some((l) => /^SOURCE:?[ \t]/.test(l)) && !lines.some((l) => /^\s*\[/.test(l));
}

export function parseAccessConf(text: string): ParsedAccessConf {
  const conf: ParsedAccessConf = { stanzas: [], outside: [] };
  text
    .replace(/^\uFEFF/, "")
    .split(/\r?\n/)
    .forEach((raw, index) => {
      const line = index + 1;
      if (raw === "" || raw.startsWith("#") || raw.startsWith(";")) return;
      const m = /^[ \t]*(\S+)[ \t]*([^;\r\n]*)/.exec(raw);
      if (!m || m[1]!.startsWith("#")) return;
      const entry: AccessEntry = { key: m[1]!.replace(/:$/, ""), value: m[2]!, line };
      if (entry.key === "SOURCE") conf.stanzas.push({ source: entry, entries: [] });
      else (conf.stanzas.at(-1)?.entries ?? conf.outside).push(entry);
    });
  return conf;
}
