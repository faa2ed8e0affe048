/** Whether the grant scenario's hiding held (bench/grant-hiding.ts), which target 4b rests on. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { hidingProblems } from "../../bench/grant-hiding.js";

const held = { hiddenLeft: [0, 0, 0], presentBefore: 10_004, presentAfter: 10_004, restoredLogged: 0 };

describe("grant hiding check", () => {
  test("empty hidden blocks, every grant still present and no repair: nothing to say", () => {
    assert.deepEqual(hidingProblems(held), []);
  });

  test("a hidden block that ended with grants in the door's sets spoils the comparison", () => {
    const problems = hidingProblems({ ...held, hiddenLeft: [0, 10_004, 10_004] });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /2 of 3 hidden blocks ended with grants.*up to 10004/);
  });

  test("grants lost from the present blocks spoil it", () => {
    assert.match(hidingProblems({ ...held, presentAfter: 9000 }).join(), /fell from 10004 to 9000/);
  });

  test("the daemon putting grants back during the scenario spoils it, even with empty hidden blocks", () => {
    assert.match(hidingProblems({ ...held, restoredLogged: 1 }).join(), /grants_restored, 1x/);
  });
});
