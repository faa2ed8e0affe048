/**
 * What a failing integration test prints besides its assertion: the last lines the daemons it
 * started logged, so a red CI run on a fresh machine says why without a rerun.
 */
import { afterEach, beforeEach, type TestContext } from "node:test";

/** Lines of each output shown for a failing test. */
const TAIL_LINES = 40;

/** A titled section holding the last TAIL_LINES lines of one output. */
export function tail(title: string, lines: readonly string[]): string[] {
  const shown = lines.slice(-TAIL_LINES);
  return [`${title} (last ${shown.length} of ${lines.length} lines):`, ...shown.map((l) => `  ${l}`)];
}

/**
 * Hooks every test of the file that imports the caller, present and future: `begin` runs before
 * each test, `explain` after each failed or timed-out one, and its lines go into the test report.
 */
export function explainFailures(begin: () => void | Promise<void>, explain: () => string[] | Promise<string[]>): void {
  beforeEach(begin);
  afterEach(async (c) => {
    // afterEach runs for tests, never suites. `passed` exists since Node 20.12; @types/node 20 lacks it.
    const t = c as TestContext & { passed?: boolean };
    if (t.passed !== false) return;
    // One diagnostic per line: the TAP reporter (CI's, without a terminal) escapes newlines.
    for (const line of await explain()) t.diagnostic(line);
  });
}
