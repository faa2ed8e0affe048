/**
 * Whether the grant scenario's hiding held (target 4b compares blocks with the grants hidden and
 * present): each hidden block must end with the door's sets empty, the present blocks must have
 * kept every grant, and the daemon must not have put grants back behind the bench's back (its
 * reconcile restores a set emptied in place: `grants_restored`). Pure.
 */
export interface HidingRecord {
  /** Grants in the door's sets at the end of each hidden block. */
  hiddenLeft: readonly number[];
  /** Grants present before the first block and after the last, a present one. */
  presentBefore: number;
  presentAfter: number;
  /** grants_restored lines the daemon logged during the scenario. */
  restoredLogged: number;
}

/** What spoils the comparison, one sentence each; empty when the hiding held. */
export function hidingProblems(h: HidingRecord): string[] {
  const problems: string[] = [];
  const leaky = h.hiddenLeft.filter((n) => n > 0);
  if (leaky.length > 0) problems.push(`${leaky.length} of ${h.hiddenLeft.length} hidden blocks ended with grants in the door's sets (up to ${Math.max(...leaky)})`);
  if (h.presentAfter < h.presentBefore) problems.push(`grants present fell from ${h.presentBefore} to ${h.presentAfter} during the blocks (expired or removed)`);
  if (h.restoredLogged > 0) problems.push(`the daemon put back grants it found missing during the scenario (grants_restored, ${h.restoredLogged}x)`);
  return problems;
}
