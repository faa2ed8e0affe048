/**
 * Shell-word syntax for the ON_OPEN / ON_CLOSE argv variables. knockgate never runs a shell: it
 * splits a value into words once, substitutes %TOKENS% inside each word, and execs the argv. So a
 * knocker's address can never become shell syntax, and `;`, `|`, `$(...)` are plain characters.
 */
import { KnockError } from "../core/errors.js";

export class ShellWordsError extends KnockError {
  constructor(
    message: string,
    /** 0-based index into the input of the offending character. */
    readonly position: number,
    readonly input: string,
  ) {
    super("KNOCK_E_CONFIG", `${message} at position ${position} in: ${input}`);
    this.name = "ShellWordsError";
  }
}

/** Something sh would interpret that splitShellWords keeps as literal text. */
export interface ShellConstruct {
  /** 0-based index of the construct in the input. */
  index: number;
  /** What sh would do there, e.g. "command separator ;". */
  construct: string;
}

// Blank characters separate words as in sh; "\r" too, so a CRLF env file leaves no stray "\r"
// at the end of the last argument (sh would keep it, which only ever produces confusing errors).
const BLANK = new Set([" ", "\t", "\n", "\r"]);
const OPERATOR: Readonly<Record<string, string>> = {
  ";": "command separator ;",
  "&": "background or && list",
  "|": "pipe or || list",
  "<": "input redirection <",
  ">": "output redirection >",
  "(": "subshell (",
  ")": "subshell )",
};
const GLOB = new Set(["*", "?", "["]);
// Words sh handles itself: running them as a program fails or does something else.
const SHELL_WORDS = new Set(
  ["if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac", "in", "{", "}", "!"]
    .concat(["cd", ".", "source", "export", "exec", "eval", "set", "unset", "ulimit", "umask", "trap", "alias"]),
);

/**
 * One pass over `s` with sh's quoting rules. Returns the words (quotes removed); reports each
 * construct sh would have expanded or interpreted through `report`, when given.
 */
function lex(s: string, report?: (c: ShellConstruct) => void): string[] {
  const words: string[] = [];
  let word = "";
  // A word exists once any character or quote pair is seen, so '' yields an empty argument.
  let inWord = false;
  const end = (): void => {
    if (inWord) words.push(word);
    word = "";
    inWord = false;
  };
  // sh expands "$" only when something expandable follows; a lone "$" stays literal.
  const dollar = (i: number): void => {
    const next = s[i + 1];
    if (next !== undefined && !BLANK.has(next) && next !== '"') {
      report?.({ index: i, construct: next === "(" ? "command substitution $(...)" : "parameter expansion $" });
    }
  };

  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (BLANK.has(c)) {
      end();
      continue;
    }
    if (c === "'") {
      const close = s.indexOf("'", i + 1);
      if (close < 0) throw new ShellWordsError("unterminated single quote", i, s);
      word += s.slice(i + 1, close);
      inWord = true;
      i = close;
      continue;
    }
    if (c === '"') {
      const open = i;
      inWord = true;
      for (i++; ; i++) {
        const d = s[i];
        if (d === undefined) throw new ShellWordsError("unterminated double quote", open, s);
        if (d === '"') break;
        if (d === "\\") {
          const e = s[i + 1];
          // Inside double quotes a backslash only escapes these; elsewhere it is literal.
          if (e === "$" || e === "`" || e === '"' || e === "\\") {
            word += e;
            i++;
          } else if (e === "\n") {
            i++; // line continuation
          } else {
            word += d;
          }
          continue;
        }
        if (d === "`") report?.({ index: i, construct: "command substitution `...`" });
        if (d === "$") dollar(i);
        word += d;
      }
      continue;
    }
    if (c === "\\") {
      const e = s[i + 1];
      if (e === undefined) throw new ShellWordsError("backslash at the end escapes nothing", i, s);
      if (e !== "\n") {
        word += e;
        inWord = true;
      }
      i++;
      continue;
    }
    if (report) {
      const op = OPERATOR[c];
      if (op !== undefined) report({ index: i, construct: op });
      else if (c === "`") report({ index: i, construct: "command substitution `...`" });
      else if (c === "$") dollar(i);
      else if (GLOB.has(c)) report({ index: i, construct: `filename pattern ${c}` });
      else if (!inWord && c === "#") report({ index: i, construct: "comment #" });
      else if (!inWord && c === "~") report({ index: i, construct: "home directory ~" });
    }
    word += c;
    inWord = true;
  }
  end();
  return words;
}

/**
 * Split like a POSIX shell, without expanding anything: blanks separate words, '...' is literal,
 * "..." honours backslash before " \ $ ` only, and a backslash outside quotes escapes the next
 * character. Throws ShellWordsError for an unterminated quote or a trailing backslash.
 */
export function splitShellWords(s: string): string[] {
  return lex(s);
}

/**
 * The first construct in `s` that only a shell would act on (operators, expansions, unquoted
 * globs, comments, a leading VAR=value, shell keywords/builtins), or undefined when splitting `s`
 * with splitShellWords and exec'ing the result behaves exactly like `sh -c s`.
 * Throws ShellWordsError like splitShellWords.
 */
export function findShellSyntax(s: string): ShellConstruct | undefined {
  const found: ShellConstruct[] = [];
  const words = lex(s, (c) => found.push(c));
  const first = found[0];
  if (first !== undefined) return first;
  const lead = s.search(/\S/);
  if (/^\s*[A-Za-z_][A-Za-z0-9_]*=/.test(s)) return { index: lead, construct: "variable assignment before the command" };
  const command = words[0];
  if (command !== undefined && SHELL_WORDS.has(command)) {
    return { index: lead, construct: `shell keyword or builtin "${command}"` };
  }
  return undefined;
}

/**
 * Replace %NAME% by vars[NAME] inside each argument, in one pass (a substituted value is never
 * scanned again). A value stays inside its argument whatever it contains: no re-splitting.
 * %NAME% with NAME absent from vars is left as written.
 */
export function substituteArgv(argv: readonly string[], vars: Readonly<Record<string, string>>): string[] {
  return argv.map((arg) =>
    arg.replace(/%([A-Za-z0-9_]+)%/g, (token: string, name: string) => (Object.hasOwn(vars, name) ? (vars[name] as string) : token)),
  );
}
