/** CPU and memory of a process tree, from /proc (the pid namespace is shared with the lab). */
import { readFileSync, readdirSync } from "node:fs";

const TICKS_PER_S = 100; // USER_HZ on Linux

interface Stat {
  pid: number;
  ppid: number;
  comm: string;
  /** utime + stime + cutime + cstime, in ticks: own time plus that of reaped children. */
  ticks: number;
}

function readStat(pid: number): Stat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm may contain spaces and parentheses: fields start after the last ")".
    const end = text.lastIndexOf(")");
    const f = text.slice(end + 2).split(" ");
    const n = (i: number) => Number(f[i] ?? 0);
    return { pid, ppid: n(1), comm: text.slice(text.indexOf("(") + 1, end), ticks: n(11) + n(12) + n(13) + n(14) };
  } catch {
    return null;
  }
}

/** pid and its live descendants, pid first; empty if pid is gone. */
function tree(root: number): Stat[] {
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
  if (!rootStat) return [];
  const out: Stat[] = [];
  const stack = [rootStat];
  for (let guard = 0; stack.length > 0 && guard < 100_000; guard++) {
    const s = stack.pop()!;
    out.push(s);
    stack.push(...(byParent.get(s.pid) ?? []));
  }
  return out;
}

/** Total CPU seconds of pid and its live descendants (reaped ones are in their parents' c-times). */
export function treeCpuSeconds(root: number): number {
  const all = tree(root);
  return all.length ? all.reduce((t, s) => t + s.ticks, 0) / TICKS_PER_S : NaN;
}

/**
 * Stops pid, then its descendants (SIGSTOP), and returns what resumes them all, children first.
 * A measurement's pause: the process's timers run late afterwards, and a command it had started
 * (a listing, say) is held too, so nothing it reads or writes meanwhile sees the pause's state.
 * iptables tools are left to finish: a stopped legacy iptables would hold the host-wide xtables lock.
 */
export function freezeTree(root: number): () => void {
  process.kill(root, "SIGSTOP");
  // Listed after the root stopped: it forks nothing more meanwhile.
  const children = tree(root)
    .slice(1)
    .filter((s) => !/^(ip6?tables|xtables)/.test(s.comm))
    .map((s) => s.pid);
  for (const pid of children) signal(pid, "SIGSTOP");
  return () => {
    for (const pid of children) signal(pid, "SIGCONT");
    signal(root, "SIGCONT");
  };
}

/** A process may have exited meanwhile. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
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
