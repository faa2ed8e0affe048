/** Makes every test of the file fail on an unhandled rejection, which would end the real daemon. */
import assert from "node:assert/strict";
import { afterEach, beforeEach } from "node:test";

export function forbidUnhandledRejections(): void {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  beforeEach(() => {
    unhandled.length = 0;
    process.on("unhandledRejection", onUnhandled);
  });
  afterEach(() => {
    process.off("unhandledRejection", onUnhandled);
    assert.deepEqual(unhandled, [], "an unhandled rejection would have ended the daemon");
  });
}
