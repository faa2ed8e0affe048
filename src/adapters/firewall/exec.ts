/**
 * Running firewall tools: always an argv (never a shell), input on stdin. Packet data never reaches
 * a command line unvalidated: addresses come from the decoder as canonical IP text.
 */
import { execFile, spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from "node:child_process";
import type { Clock } from "../../core/clock.js";
import { FirewallError } from "../../core/errors.js";
import { holdingClock } from "../clock.js";
import type { Logger } from "../log.js";
import { toolEnv } from "../child-env.js";

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

export type Runner = (argv: readonly string[], input?: string) => Promise<RunResult>;

/**
 * A one-shot command still running after this long is hung (a netlink call that never returns, the
 * xtables lock never released by its holder): it is killed and fails like any other command, so a
 * reconcile reports it instead of waiting forever. Far above the slowest seen: the ruleset with
 * full 65,536-entry replay sets, under a second.
 */
export const COMMAND_DEADLINE_MS = 60_000;

/** Runs each command to its end, or kills it after `deadlineMs`, in `env` (a firewall tool's by default). */
export function deadlineRunner(deadlineMs: number, env: () => NodeJS.ProcessEnv = toolEnv): Runner {
  return (argv, input) =>
    new Promise((resolve, reject) => {
      const [file, ...args] = argv;
      if (file === undefined) throw new Error("empty command");
      const child = execFile(file, args, { maxBuffer: 64 * 1024 * 1024, timeout: deadlineMs, killSignal: "SIGKILL", env: env() }, (err, stdout, stderr) => {
        if (err?.killed) {
          reject(new FirewallError(`no answer within ${deadlineMs} ms, so it was killed`, argv, stderr));
          return;
        }
        if (err && typeof err.code !== "number") {
          reject(new FirewallError(`cannot run ${file}`, argv, err.message));
          return;
        }
        resolve({ stdout, stderr, code: typeof err?.code === "number" ? err.code : 0 });
      });
      // A tool that exits before reading its input would raise EPIPE; its exit code tells the story.
      child.stdin?.on("error", () => undefined);
      child.stdin?.end(input);
    });
}

export const execRunner: Runner = deadlineRunner(COMMAND_DEADLINE_MS);

/** Runs a command that must succeed; its failure is a FirewallError naming the command. */
export async function mustRun(run: Runner, argv: readonly string[], input?: string): Promise<string> {
  const r = await run(argv, input);
  if (r.code !== 0) throw new FirewallError(`exit code ${r.code}`, argv, r.stderr);
  return r.stdout;
}

/** Pauses before the second and the third try of a command that failed transiently. */
const RETRY_DELAYS_MS: readonly number[] = [100, 300];

/**
 * Failures that pass by themselves: another process holds the xtables lock (iptables exits 4,
 * EAGAIN); a set still referenced while the kernel finishes removing the rule that used it; netlink
 * busy (EBUSY, EAGAIN) or interrupted (EINTR). Bad syntax, a missing object or a missing
 * capability are no such thing.
 */
const TRANSIENT = /xtables lock|resource temporarily unavailable|resource busy|in use by a kernel component|interrupted system call/i;

/**
 * A Runner that runs a command again, after a short pause, while it fails transiently: for the
 * install at start and for removal, where one such failure would end the daemon or leave objects
 * behind. Each retry is logged at warn with the command and its stderr.
 */
export function patientRunner(run: Runner, log: Logger, delaysMs: readonly number[] = RETRY_DELAYS_MS, clock: Clock = holdingClock): Runner {
  return async (argv, input) => {
    for (const delay of delaysMs) {
      const r = await run(argv, input);
      if (r.code === 0 || !TRANSIENT.test(r.stderr)) return r;
      const command = argv.join(" ");
      const stderr = r.stderr.trim();
      log.warn({ event: "firewall_retry", command, code: r.code, stderr, retry_in_ms: delay }, `${command} failed (${stderr}); trying again in ${delay} ms`);
      await new Promise<void>((resolve) => clock.after(delay, resolve));
    }
    return run(argv, input);
  };
}

/** How a long-lived tool says that one command is done. */
export interface LineProtocol {
  argv: readonly string[];
  /** Printed on stdout once per finished command (a prompt, or nft's "# new generation" line). */
  marker: RegExp;
  /** Completions to skip at start (a prompt printed before the first command). */
  initial: number;
  /**
   * Sent after every command, for a tool that prints nothing on success (nft -i): a cheap command
   * whose output carries the marker.
   */
  suffix?: string;
  /**
   * A line that changes nothing and is answered like any command (with the suffix: one marker),
   * which wake() sends. None: wake() does nothing.
   */
  noop?: string;
  /** How long pending commands may go without a completion before the child counts as hung (ms). */
  deadlineMs?: number;
  /** How a loss names the helper; `helper \`ARGV\`` when unset. */
  name?: string;
  /** Variables the child gets besides toolEnv's. */
  env?: Readonly<Record<string, string>>;
  /** A child is replaced, once idle, after this many commands or bytes written: for a tool whose cost or memory grows with every line. */
  renewAfter?: { commands: number; bytes: number };
}

/**
 * A helper that answers nothing this long is hung (a stuck netlink call, a stopped process): it is
 * killed, its commands fail and go again as commands of their own, and the next reconcile reports
 * it. Far above the slowest answer seen (a 256-address batch next to 10,000 grants: tens of ms).
 */
const ANSWER_DEADLINE_MS = 10_000;

interface Pending {
  line: string;
  resolve: () => void;
  reject: (err: Error) => void;
  /** Sent by wake(). */
  noop: boolean;
}

/**
 * One long-lived `ipset -` or `nft -i` child that applies each line as it arrives: a grant costs a
 * write and a read instead of a process spawn (about 1.5 ms here). Any output on stderr is an error;
 * since we cannot tell which queued line it belongs to, every pending line fails and the child is
 * restarted, and callers retry with a one-shot command. The error carries the whole message: it is
 * gathered until the tool's next completion marker (a message can come in more than one read).
 */
export class LineSession {
  private child: ChildProcessWithoutNullStreams | null = null;
  private pending: Pending[] = [];
  private skip = 0;
  private unread = "";
  /** How the last child ended when we did not end it; null when none did since takeLoss. */
  private lost: string | null = null;
  /** What the current child wrote on stderr: any of it ends the child at the next completion. */
  private stderr = "";
  /** Armed while commands are pending: time since the last completion. */
  private deadline: NodeJS.Timeout | undefined;
  /** Commands and bytes written to the current child. */
  private commands = 0;
  private bytes = 0;

  constructor(private readonly protocol: LineProtocol) {}

  /** How losses name this helper: `helper \`nft -i\``. */
  private get name(): string {
    return this.protocol.name ?? `helper \`${this.protocol.argv.join(" ")}\``;
  }

  /**
   * Whether the child died by itself (killed, crashed) since the last call, and how: the next
   * command starts another, but a reconcile reports it as a repair, so it is logged and counted.
   */
  takeLoss(): string | null {
    const lost = this.lost;
    this.lost = null;
    return lost;
  }

  send(line: string): Promise<void> {
    return this.enqueue(line, false);
  }

  private enqueue(line: string, noop: boolean): Promise<void> {
    if (line.includes("\n")) return Promise.reject(new Error("a command must be one line"));
    const child = this.child ?? this.start();
    return new Promise((resolve, reject) => {
      this.pending.push({ line, resolve, reject, noop });
      this.deadline ??= this.arm();
      const text = this.textOf(line);
      this.commands++;
      this.bytes += text.length;
      child.stdin.write(text);
    });
  }

  private textOf(line: string): string {
    return this.protocol.suffix ? `${line}\n${this.protocol.suffix}\n` : `${line}\n`;
  }

  /** Whether the child took its share (LineProtocol.renewAfter), or would with the command `next` written too. */
  private worn(next?: string): boolean {
    const limit = this.protocol.renewAfter;
    if (!limit) return false;
    return this.commands + (next === undefined ? 0 : 1) >= limit.commands || this.bytes + (next?.length ?? 0) >= limit.bytes;
  }

  private arm(): NodeJS.Timeout {
    const ms = this.protocol.deadlineMs ?? ANSWER_DEADLINE_MS;
    const timer = setTimeout(() => {
      this.deadline = undefined;
      this.died(`no answer within ${ms} ms`, new Error(`${this.protocol.argv.join(" ")} gave no answer within ${ms} ms`), "SIGKILL");
    }, ms);
    timer.unref();
    return timer;
  }

  /**
   * Sends the protocol's no-op when the child is idle: a command expected within the millisecond
   * then finds the helper awake and its path in cache instead of waking it (docs/bench.md, 8f).
   * Nothing without a no-op, before a child runs, while commands are pending (the helper is awake),
   * or when the no-op would wear the child out (its replacement would be starting as the command
   * comes). Never fails: a no-op that fails or hangs ends the child as any command would, and the
   * command behind it fails with no message of its own (stderrError).
   */
  wake(): void {
    const { noop } = this.protocol;
    if (noop === undefined || !this.child || this.pending.length > 0 || this.worn(this.textOf(noop))) return;
    this.enqueue(noop, true).catch(() => undefined);
  }

  /** Starts the child ahead of the first command, so the first grant does not pay for the spawn. */
  open(): void {
    this.child ??= this.start();
  }

  close(): void {
    this.fail(new Error(`${this.protocol.argv[0]} session closed`));
  }

  /**
   * A child that took its share (LineProtocol.renewAfter) is replaced while nothing is pending, the
   * next one started at once: the command after pays its start (about 10 ms for nft), once per share.
   * Runs in the child's output callback, so a start that fails is kept for takeLoss (the next
   * reconcile reports it) and the next command tries again and fails with it.
   */
  private renewIfWorn(): void {
    if (!this.worn()) return;
    this.close();
    try {
      this.open();
    } catch (err) {
      this.lost = `${this.name} could not be started again (${(err as Error).message})`;
    }
  }

  private start(): ChildProcessWithoutNullStreams {
    const [file = "", ...args] = this.protocol.argv;
    const spawned: ChildProcess = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"], env: toolEnv(this.protocol.env) });
    spawned.on("error", (err) => this.child === spawned && this.died(err.message, err));
    // Out of file descriptors, spawn gives a child without pipes (its "error" follows): a failed start.
    if (!spawned.stdin || !spawned.stdout || !spawned.stderr) {
      spawned.kill();
      throw new FirewallError("could not start the helper: no pipes to it (out of file descriptors?)", this.protocol.argv, "");
    }
    const child = spawned as ChildProcessWithoutNullStreams;
    this.child = child;
    this.skip = this.protocol.initial;
    this.unread = "";
    this.stderr = "";
    this.commands = 0;
    this.bytes = 0;
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      // A replaced child's last output is not the current child's.
      if (this.child !== child) return;
      let n = this.takeMarkers(chunk);
      // stderr is written before the completion marker; let its read callback run first.
      setImmediate(() => {
        if (this.child !== child) return;
        // The start's prompts end no command: stderr read with them belongs to the command after,
        // and failing on it would cut that command's message short.
        for (; n > 0 && this.skip > 0; n--) this.skip--;
        if (n > 0 && this.stderr !== "") {
          this.fail(this.stderrError());
          return;
        }
        for (; n > 0; n--) this.pending.shift()?.resolve();
        clearTimeout(this.deadline);
        this.deadline = this.pending.length > 0 ? this.arm() : undefined;
        if (this.pending.length === 0) this.renewIfWorn();
      });
    });
    child.stderr.on("data", (chunk: string) => {
      if (this.child === child) this.stderr += chunk;
    });
    child.on("exit", (code, signal) =>
      this.child === child &&
      this.died(signal ? `signal ${signal}` : `exit code ${code}`, this.stderr ? this.stderrError() : new Error(`${file} exited`)),
    );
    child.stdin.on("error", () => undefined); // reported through "exit"
    return child;
  }

  /**
   * What the pending commands fail with once the child wrote on stderr: the message, which callers
   * read as the failed command's own. Not behind a no-op (wake), where it cannot be placed: a failed
   * nft listing prints no marker, so the marker at hand may be the next command's, or the no-op
   * answered and the next command's message is not whole yet. The commands then fail with no
   * message of their own, as when a child is lost.
   */
  private stderrError(): Error {
    const [argv0 = ""] = this.protocol.argv;
    if (this.pending[0]?.noop && this.pending.length > 1) return new Error(`${argv0} wrote on stderr behind a no-op, for it or the command after: ${this.stderr.trim()}`);
    return new FirewallError("command failed", this.protocol.argv, this.stderr);
  }

  /** Markers can straddle two reads: count whole ones and keep the tail for the next read. */
  private takeMarkers(chunk: string): number {
    const text = this.unread + chunk;
    const re = new RegExp(this.protocol.marker.source, "g");
    let count = 0;
    let end = 0;
    for (const m of text.matchAll(re)) {
      count++;
      end = (m.index ?? 0) + m[0].length;
    }
    this.unread = text.slice(end).slice(-256);
    return count;
  }

  private died(how: string, err: Error, signal?: NodeJS.Signals): void {
    this.lost = `${this.name} ended (${how}); started again`;
    this.fail(err, signal);
  }

  private fail(err: Error, signal: NodeJS.Signals = "SIGTERM"): void {
    const child = this.child;
    this.child = null;
    const pending = this.pending;
    this.pending = [];
    clearTimeout(this.deadline);
    this.deadline = undefined;
    child?.stdin.end();
    child?.kill(signal);
    for (const p of pending) p.reject(err);
  }
}
