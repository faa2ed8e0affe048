/**
 * What the plans of sequence doors (plan.ts) and signed doors (spa-plan.ts) share: the families, our
 * nft table, the shape of a kernel set's entry and nft's set-element lines. A file of its own so
 * neither plan imports the other (an import cycle).
 */
import type { Family } from "../types.js";

export const NFT_TABLE = "knockgate";

export const FAMILIES: readonly Family[] = [4, 6];

/** An address in a kernel set, with the time it has left; null when it stays until revoked. */
export interface KernelGrant {
  src: string;
  remainingMs: number | null;
}

/** Every element of `nft -j list set` output: its value as nft gives it, and the time it has left. */
export function nftSetElements(json: string): { val: unknown; remainingMs: number | null }[] {
  type Elem = string | { elem?: { val?: unknown; expires?: unknown } };
  const parsed = JSON.parse(json) as { nftables?: { set?: { elem?: Elem[] } }[] };
  const elements: { val: unknown; remainingMs: number | null }[] = [];
  for (const item of parsed.nftables ?? []) {
    for (const e of item.set?.elem ?? []) {
      if (typeof e === "string") elements.push({ val: e, remainingMs: null });
      else if (e.elem !== undefined) elements.push({ val: e.elem.val, remainingMs: typeof e.elem.expires === "number" ? e.elem.expires * 1000 : null });
    }
  }
  return elements;
}

/** Takes elements out of a set as one transaction; adding first makes one that already expired no error. */
export function nftTakeOutLine(set: string, elements: readonly string[]): string {
  const all = elements.join(", ");
  return `add element ${set} { ${all} }; delete element ${set} { ${all} }`;
}

/** Puts elements in with a fresh timeout (null: none): taken out first, so a repeat refreshes it. */
export function nftPutLine(set: string, elements: readonly string[], timeoutS: number | null): string {
  const timeout = timeoutS === null ? "" : ` timeout ${timeoutS}s`;
  return `${nftTakeOutLine(set, elements)}; add element ${set} { ${elements.map((e) => e + timeout).join(", ")} }`;
}
