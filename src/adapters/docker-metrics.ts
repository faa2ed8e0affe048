/**
 * Metrics of the Docker label watcher, in the public set: they move on container changes, never on
 * a packet, so they tell an observer nothing about a sequence.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { EffectiveDoor } from "../core/docker/desired.js";
import type { Conflict } from "../core/protection/targets.js";

export interface DockerMetricSources {
  readonly enabled: boolean;
  effective(): EffectiveDoor[];
  conflicts(): readonly Conflict[];
  reconnects(): number;
}

export function registerDockerMetrics(registry: Registry, source: DockerMetricSources): void {
  const registers = [registry];
  new Gauge({
    name: "knockgate_protected_ports",
    help: "Ports a door protects right now: its KNOCK_DOOR_<NAME>_PORTS joined with the host ports of labelled containers.",
    labelNames: ["door"],
    registers,
    collect() {
      for (const d of source.effective()) this.set({ door: d.door }, d.ports.length);
    },
  });
  if (!source.enabled) return;
  new Gauge({
    name: "knockgate_docker_containers",
    help: "Containers (running or not) whose knockgate.door/knockgate.doors labels name the door.",
    labelNames: ["door"],
    registers,
    collect() {
      for (const d of source.effective()) this.set({ door: d.door }, d.containers);
    },
  });
  new Counter({
    name: "knockgate_docker_reconnects_total",
    help: "Times the Docker event stream was followed again after it broke or the engine was away; each one re-lists every container.",
    registers,
    collect() {
      this.reset();
      this.inc(source.reconnects());
    },
  });
  new Gauge({
    name: "knockgate_label_conflicts",
    help: "Docker label claims refused right now because another door owns the target (label_conflict in the log), by the door the label named.",
    labelNames: ["door"],
    registers,
    collect() {
      this.reset();
      for (const d of source.effective()) this.set({ door: d.door }, 0);
      for (const c of source.conflicts()) this.inc({ door: c.claim.door });
    },
  });
}
