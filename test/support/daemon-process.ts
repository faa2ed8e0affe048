/**
 * A knockgate daemon started by a test or the soak: its JSON log lines as they come, waits for an
 * event, and how it ended with its last words. Apart from lab.ts so that tools outside node:test
 * (bench/soak.ts) can use it without lab.ts's test hooks.
 */
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { tail } from "./failure-report.js";

export interface LogLine {
  event?: string;
  level: number;
  [key: string]: unknown;
}

export class DaemonProcess {
  readonly logs: LogLine[] = [];
  readonly stderr: string[] = [];
  private readonly exited: Promise<number>;
  /** Each waitFor's wake-up, there while it waits (several tests wait at once). */
  private readonly waiters = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        this.stderr.push(line);
      }
      for (const w of this.waiters) w();
    });
    createInterface({ input: child.stderr! }).on("line", (line) => this.stderr.push(line));
    this.exited = once(child, "exit").then(([code, signal]) => (code as number | null) ?? (signal === "SIGKILL" ? 137 : 128));
  }

  events(name: string): LogLine[] {
    return this.logs.filter((l) => l.event === name);
  }

  /** Waits for a log line with this event (and matching fields); rejects after timeoutMs. */
  async waitFor(event: string, timeoutMs = 5000, match: (l: LogLine) => boolean = () => true): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.logs.find((l) => l.event === event && match(l));
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${event}" log within ${timeoutMs} ms (the daemon's last log lines follow the failure)`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.waiters.add(wake);
      });
    }
  }

  stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number> {
    this.child.kill(signal);
    return this.exited;
  }

  get exitCode(): Promise<number> {
    return this.exited;
  }

  /** How it ended, and the last of what it logged and wrote to stderr. */
  lastWords(title: string): string[] {
    const { exitCode, signalCode } = this.child;
    const state = exitCode !== null ? `exit code ${exitCode}` : signalCode !== null ? `signal ${signalCode}` : "running";
    return [
      ...tail(`${title} (${state}), log`, this.logs.map((l) => JSON.stringify(l))),
      ...tail(`${title}, stderr`, this.stderr),
    ];
  }
}
