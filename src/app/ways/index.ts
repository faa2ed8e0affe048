/** The ways in that captured packets feed, in the order they are asked: one registration each. */
import type { Grants } from "../grants.js";
import { SequenceWay, type SequenceDeps } from "./sequence.js";
import { SignedWay, type SpaDeps } from "./signed/signed-way.js";
import { KernelWay, type KernelDeps } from "./kernel/kernel-way.js";
import type { PacketWay } from "./way.js";

export type { PacketWay } from "./way.js";

export interface Ways {
  /** In order: a packet goes to the first that takes it. */
  all: PacketWay[];
  /** The knock sequences: recognised from captured packets, or in the kernel (KNOCK_ENGINE). */
  sequence: { readonly tracked: number };
}

export function waysIn(deps: SequenceDeps & SpaDeps & KernelDeps, grants: Grants): Ways {
  const sequence = deps.config.engine === "kernel" ? new KernelWay(deps, grants) : new SequenceWay(deps, grants);
  const signed = SignedWay.forDoors(deps.config.doors, deps, (g) => grants.open(g));
  return { all: [...(signed ? [signed] : []), sequence], sequence };
}
