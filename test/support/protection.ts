/** The protection a configuration gives without Docker: each door's own ports on every host address. */
import type { DoorPorts } from "../../src/app/protection.js";
import { decideDoors } from "../../src/core/docker/desired.js";
import { doorPorts, type OwnedTarget } from "../../src/core/protection/targets.js";
import type { Config } from "../../src/core/types.js";

export const envTargets = (config: Pick<Config, "doors">): OwnedTarget[] => decideDoors(config.doors, []).targets;

export const envPorts = (config: Pick<Config, "doors">): DoorPorts => {
  const targets = envTargets(config);
  return { portsOf: (door) => doorPorts(targets, door) };
};
