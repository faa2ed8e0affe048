/** What the firewall plan and its readers share: the families, and a kernel set's entry. */
import type { Family } from "../types.js";

export const FAMILIES: readonly Family[] = [4, 6];

/** An address in a kernel set, with the time it has left; null when it stays until revoked. */
export interface KernelGrant {
  src: string;
  remainingMs: number | null;
}
