/** The ways in that captured packets feed, in the order they are asked: one registration each. */
import type { Grants } from "../grants.js";
import { SequenceWay, type SequenceDeps } from "./sequence.js";
import { SignedWay, type SpaDeps } from "./signed/signed-way.js";
import type { PacketWay } from "./way.js";

export type { PacketWay } from "./way.js";

export interface Ways {
  /** In order: a packet goes to the first that takes it. */
  all: PacketWay[];
  sequence: SequenceWay;
}

export function waysIn(deps: SequenceDeps & SpaDeps, grants: Grants): Ways {
  const sequence = new SequenceWay(deps, grants);
  const signed = SignedWay.forDoors(deps.config.doors, deps, (g) => void grants.open(g));
  return { all: [...(signed ? [signed] : []), sequence], sequence };
}
