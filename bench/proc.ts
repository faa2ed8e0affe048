/** CPU and memory of a process tree, from /proc (the pid namespace is shared with the lab). */
import { readFileSync, readdirSync } from "node:fs";

const TICKS_PER_S = 100; // USER_HZ on Linux

interface Stat {
  pid: number;
  ppid: number;
  /** utime + stime + cutime + cstime, in ticks: own time plus that of reaped children. */
  ticks: number;
}

function readStat(pid: number): Stat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm may contain spaces and parentheses: fields start after the last ")".
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    const n = (i: number) => Number(f[i] ?? 0);
    return { pid, ppid: n(1), ticks: n(11) + n(12) + n(13) + n(14) };
  } catch {
    return null;
  }
}

/** Total CPU seconds of pid and its live descendants (reaped ones are in their parents' c-times). */
export function treeCpuSeconds(root: number): number {
  const byParent = new Map<number, Stat[]>();
  let rootStat: Stat | null = null;
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const s = readStat(pid);
    if (!s) continue;
    if (pid === root) rootStat = s;
    const list = byParent.get(s.ppid) ?? [];
    list.push(s);
    byParent.set(s.ppid, list);
  }
  if (!rootStat) return NaN;
  let ticks = 0;
  const stack = [rootStat];
  for (let guard = 0; stack.length > 0 && guard < 100_000; guard++) {
    const s = stack.pop()!;
    ticks += s.ticks;
    stack.push(...(byParent.get(s.pid) ?? []));
  }
  return ticks / TICKS_PER_S;
}

/** Resident set of one process in MB (VmRSS), NaN if it is gone. */
export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Samples CPU (as % of one core over the window) and RSS of a process tree. */
export class ProcSampler {
  private startCpu: number;
  private startAt: number;
  readonly rss: { tMs: number; mb: number }[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly pid: number,
    everyMs = 500,
  ) {
    this.startCpu = treeCpuSeconds(pid);
    this.startAt = performance.now();
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }

  private sample(): void {
    this.rss.push({ tMs: Math.round(performance.now() - this.startAt), mb: rssMb(this.pid) });
  }

  /** Stops sampling; CPU % of one core since the start. */
  stop(): { cpuPct: number; cpuSeconds: number; rssMaxMb: number; rssEndMb: number } {
    if (this.timer) clearInterval(this.timer);
    this.sample();
    const cpuSeconds = treeCpuSeconds(this.pid) - this.startCpu;
    const wall = (performance.now() - this.startAt) / 1000;
    const mbs = this.rss.map((r) => r.mb).filter((m) => Number.isFinite(m));
    return {
      cpuPct: wall > 0 ? (100 * cpuSeconds) / wall : NaN,
      cpuSeconds,
      rssMaxMb: mbs.length ? Math.max(...mbs) : NaN,
      rssEndMb: mbs.at(-1) ?? NaN,
    };
  }
}
