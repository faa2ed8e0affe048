/**
 * Follows Docker for knockgate labels (KNOCK_DOCKER) and keeps the firewall's protected ports equal
 * to each door's own ports joined with what labelled containers publish. Events are read as they
 * come; a broken stream (engine restart, socket gone, a socket that is not there yet) is retried
 * with backoff, and every reconnect re-lists everything, so nothing missed meanwhile stays wrong.
 * While Docker is out of reach the last protection stays in place: fail closed.
 */
import type { Cancel, Clock } from "../core/clock.js";
import { errorFields } from "../core/errors.js";
import { readContainer, type LabelledContainer } from "../core/docker/labels.js";
import { portName, type Config, type Family } from "../core/types.js";
import type { DockerEngine, DockerEvent, EventStream } from "../adapters/docker.js";
import type { Check } from "../adapters/http.js";
import type { Logger } from "../adapters/log.js";
import type { ProtectionService } from "./protection.js";

/** How long the start waits for Docker before installing the firewall without label ports. */
export const INITIAL_LOOK_MS = 5000;
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10_000;
export interface DockerWatchDeps {
  config: Config;
  engine: DockerEngine;
  log: Logger;
  clock: Clock;
  /** Decides what the labels claim and writes it to the firewall: the watcher only proposes. */
  protection: ProtectionService;
}

export class DockerWatch {
  /** Labelled containers by full id. */
  private readonly containers = new Map<string, LabelledContainer>();
  /** Host ports read from Docker's NAT rules as a container joined a network, until a read shows it running. */
  private readonly atJoin = new Map<string, LabelledContainer>();
  /** Last problems logged per container, so a container is not reported again on every event. */
  private readonly problemsLogged = new Map<string, string>();
  private readonly dirty = new Set<string>();
  /** Proposals go to the firewall (follow was called): before that, only the first look at start. */
  private following = false;
  private stream: EventStream | null = null;
  private flushing: Promise<void> | null = null;
  /** A connect (subscribe and re-list) is in flight; events wait for it in `dirty`. */
  private connecting = false;
  private retryMs = FIRST_RETRY_MS;
  private cancelRetry: Cancel | null = null;
  private stopped = false;
  /** A complete list of the labelled containers was read at least once since start. */
  private listed = false;
  /** The engine answered at least once since start. */
  private seen = false;
  /** Following the engine's events now. */
  get connected(): boolean {
    return this.stream !== null;
  }
  /** Wall-clock ms since the stream is down (null: up, or never up). */
  private downSince: number | null = null;
  private downReason: string | null = null;
  /** Successful reconnects after a lost or failed stream. */
  reconnects = 0;

  /** The door names labels may give: the configured doors, which never change. */
  private readonly doorNames: ReadonlySet<string>;

  constructor(private readonly deps: DockerWatchDeps) {
    this.doorNames = new Set(deps.config.doors.map((d) => d.name));
  }

  get enabled(): boolean {
    return this.deps.config.docker.mode !== "off";
  }

  /**
   * One attempt to connect and list before the firewall is installed, so that its first install
   * already protects what labelled containers publish (the protection has it when this resolves).
   */
  async initial(timeoutMs: number): Promise<void> {
    if (!this.enabled) return;
    let cancel: Cancel = () => undefined;
    // An engine that does not answer must not hold up the install; the connect goes on meanwhile.
    await Promise.race([this.connect(), new Promise<void>((resolve) => (cancel = this.deps.clock.after(timeoutMs, resolve)))]);
    cancel();
  }

  /** From now on, proposals reach the firewall; reconnects are scheduled if the first attempt failed. */
  follow(): void {
    this.following = true;
    if (!this.enabled) return;
    if (!this.connected) this.scheduleRetry();
    this.requestFlush();
  }

  stop(): void {
    this.stopped = true;
    this.cancelRetry?.();
    this.stream?.close();
  }

  checks(): Check[] {
    if (!this.enabled) return [];
    const { mode, host } = this.deps.config.docker;
    if (this.connected) return [{ name: "docker", ok: true, detail: `following ${host}: ${this.containers.size} labelled container(s)` }];
    const since = this.downSince === null ? "" : ` since ${new Date(this.downSince).toISOString()}`;
    const reason = this.downReason === null ? "" : ` (${this.downReason})`;
    if (mode === "auto" && !this.seen) {
      return [{ name: "docker", ok: true, detail: `no Docker engine at ${host}${reason}; KNOCK_DOCKER=auto: labels are followed once it appears` }];
    }
    return [{ name: "docker", ok: false, detail: `event stream down${since}${reason}; the last known ports stay protected` }];
  }

  /** Subscribes and re-lists; on failure, tries again later once the watcher is following. */
  private async connect(): Promise<void> {
    const { engine, log } = this.deps;
    this.connecting = true;
    let stream: EventStream | null = null;
    try {
      // Subscribe first, list second: a change between the two arrives as an event and is read again.
      stream = await engine.events((e) => this.onEvent(e));
      await this.resync();
    } catch (err) {
      stream?.close();
      this.connecting = false;
      this.lost(errorFields(err, "KNOCK_E_DOCKER").err);
      if (this.following) this.scheduleRetry();
      return;
    }
    this.connecting = false;
    if (this.stopped) {
      stream.close();
      return;
    }
    const wasSeen = this.seen;
    this.stream = stream;
    this.seen = true;
    this.retryMs = FIRST_RETRY_MS;
    if (wasSeen) this.reconnects++;
    const down = this.downSince === null ? {} : { down_since: new Date(this.downSince).toISOString() };
    this.downSince = null;
    this.downReason = null;
    log.info({ event: "docker_connected", host: this.deps.config.docker.host, containers: this.containers.size, ...down }, `following Docker at ${this.deps.config.docker.host}`);
    const current = stream;
    current.ended.then(
      () => this.streamEnded(current, "the engine closed the event stream"),
      (err: unknown) => this.streamEnded(current, errorFields(err, "KNOCK_E_DOCKER").err),
    );
    if (this.following) this.requestFlush();
  }

  private streamEnded(stream: EventStream, reason: string): void {
    if (this.stream !== stream || this.stopped) return;
    this.lost(reason);
    this.stream = null;
    this.scheduleRetry();
  }

  /** Logged once per distinct reason: a missing socket must not fill the log every retry. */
  private lost(reason: string): void {
    const { log, clock, config } = this.deps;
    const wasConnected = this.connected;
    this.downSince ??= clock.wallNow();
    if (reason === this.downReason && !wasConnected) return;
    this.downReason = reason;
    const fields = { event: "docker_unavailable", host: config.docker.host, mode: config.docker.mode, err: reason, code: "KNOCK_E_DOCKER" };
    if (config.docker.mode === "auto" && !this.seen) {
      log.info(fields, `no Docker engine at ${config.docker.host} (${reason}): knockgate.door labels are followed once it appears (KNOCK_DOCKER=auto)`);
    } else {
      log.warn(fields, `Docker event stream down (${reason}): retrying; the last known ports stay protected`);
    }
  }

  private scheduleRetry(): void {
    if (this.stopped || this.cancelRetry !== null || this.connecting) return;
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
    this.cancelRetry = this.deps.clock.after(wait, () => {
      this.cancelRetry = null;
      void this.connect();
    });
  }

  /** Reads every labelled container again; containers that went away meanwhile are dropped. */
  private async resync(): Promise<void> {
    const ids = await this.deps.engine.labelled();
    const fresh = new Map<string, LabelledContainer>();
    for (const id of ids) {
      const c = await this.read(id);
      if (c) fresh.set(id, c);
    }
    this.containers.clear();
    for (const [id, c] of fresh) this.containers.set(id, c);
    for (const id of this.problemsLogged.keys()) if (!fresh.has(id)) this.problemsLogged.delete(id);
    for (const id of this.atJoin.keys()) if (fresh.get(id)?.running !== false) this.atJoin.delete(id);
    this.listed = true;
    await this.propose();
  }

  /**
   * The containers as known now, once a complete list is behind them: before that, an empty map
   * would say "no labelled containers" and release what a previous run's labels kept closed.
   */
  private async propose(): Promise<void> {
    if (this.listed) await this.deps.protection.propose(this.current());
  }

  private async read(id: string): Promise<LabelledContainer | null> {
    const inspect = await this.deps.engine.inspect(id);
    const c = inspect === null ? null : readContainer(inspect, this.doorNames);
    const problems = c?.problems.join("; ") ?? "";
    if (c && problems !== "" && this.problemsLogged.get(id) !== problems) {
      this.deps.log.warn({ event: "docker_label_problems", container: c.container.name, id: c.container.id, problems: c.problems }, `container ${c.container.name}: ${problems}`);
    }
    if (problems === "") this.problemsLogged.delete(id);
    else this.problemsLogged.set(id, problems);
    return c;
  }

  private onEvent(e: DockerEvent): void {
    this.dirty.add(e.id);
    this.requestFlush();
    if (e.action === "connect" && e.network !== undefined) void this.joining(e.id, e.network);
  }

  /**
   * A labelled container joining a network during its start already has its host ports, random
   * ones included, in Docker's NAT rules, a few hundred ms before its process runs and the start
   * event comes (an inspect would wait for the start to finish). Protected from here, they are
   * closed before they can answer. Every port forwarded to it is taken (knockgate.ports cannot be
   * checked without the inspect: more closed, briefly); the read after the start replaces these.
   */
  private async joining(id: string, network: string): Promise<void> {
    if (!this.following || this.containers.get(id)?.running === true) return;
    let joining;
    try {
      joining = await this.deps.engine.joining(network, id);
    } catch (err) {
      this.deps.log.debug({ event: "docker_nat_unread", id: id.slice(0, 12), err: errorFields(err, "KNOCK_E_DOCKER").err });
      return;
    }
    const c = joining && readContainer(joining.container, this.doorNames);
    // Read after its start meanwhile: that read is the better one.
    if (!joining || !c || this.containers.get(id)?.running === true) return;
    const added = joining.bindings.map((b) => ({ ...b.host, families: [4, 6] as Family[], hostIp: "", containerPort: { port: b.containerPort, proto: b.host.proto }, container: c.container }));
    if (added.length === 0 || c.doors.length === 0) return;
    this.atJoin.set(id, { ...c, doors: c.doors.map((d) => ({ ...d, hostPorts: added, addresses: [] })) });
    this.deps.log.info(
      { event: "docker_ports_at_join", container: c.container.name, id: c.container.id, ports: added.map(portName) },
      `container ${c.container.name} joins a network: protecting its host ports before it starts`,
    );
    await this.propose();
  }

  /** The labelled containers, and the ports of those seen joining a network but not yet running. */
  private current(): LabelledContainer[] {
    const joined = (id: string, c: LabelledContainer): LabelledContainer => {
      const j = this.atJoin.get(id);
      return j ? { ...c, doors: c.doors.map((d) => ({ ...d, hostPorts: [...d.hostPorts, ...(j.doors.find((x) => x.door === d.door)?.hostPorts ?? [])] })) } : c;
    };
    const unread = [...this.atJoin].filter(([id]) => !this.containers.has(id)).map(([, c]) => c);
    return [...[...this.containers].map(([id, c]) => joined(id, c)), ...unread];
  }

  /** One flush at a time; events that arrive during one are read by the next. */
  private requestFlush(): void {
    // A re-list in flight would overwrite what a flush reads now with what it read earlier.
    if (this.flushing || this.connecting) return;
    this.flushing = this.flush().finally(() => {
      this.flushing = null;
      if (this.dirty.size > 0 && !this.stopped) this.requestFlush();
    });
  }

  private async flush(): Promise<void> {
    const ids = [...this.dirty];
    this.dirty.clear();
    for (const id of ids) {
      try {
        const c = await this.read(id);
        if (c) this.containers.set(id, c);
        else this.containers.delete(id);
        if (!c || c.running) this.atJoin.delete(id);
      } catch (err) {
        // The engine went away mid-read: the reconnect's re-list reads it again.
        this.deps.log.debug({ event: "docker_inspect_failed", id: id.slice(0, 12), err: errorFields(err, "KNOCK_E_DOCKER").err });
      }
    }
    await this.propose();
  }
}
