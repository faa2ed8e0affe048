/**
 * The SPA test vectors written by the real fwknop client (test/fixtures/spa/vectors.json, made by
 * make-vectors.mjs), the keys that made them, and a door's limits for reading them.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { SpaKeys, SpaLimits } from "../../src/core/spa/verify.js";
import type { HmacDigest } from "../../src/core/spa/wire.js";

export interface Vector {
  name: string;
  hmacDigest: HmacDigest;
  payload: string;
  now: number;
  /** What the client printed about the datagram it built (fwknop -v). */
  client: { username: string; timestamp: number; type: number; message: string; natAccess: string; clientTimeout: number; digestType: string; plaintext: string };
  expected: { refused: string } | { address: string; family: number | "source"; ports: string[]; openForS: number; username: string; type: number };
}

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
export const SPA_FIXTURE = JSON.parse(readFileSync(`${ROOT}test/fixtures/spa/vectors.json`, "utf8")) as { keyBase64: string; hmacKeyBase64: string; vectors: Vector[] };

/** The vectors' keys, with the HMAC digest a vector used. */
export const fixtureKeys = (hmacDigest: HmacDigest): SpaKeys => ({
  encryptionKey: Buffer.from(SPA_FIXTURE.keyBase64, "base64"),
  hmacKey: Buffer.from(SPA_FIXTURE.hmacKeyBase64, "base64"),
  hmacDigest,
});

/** fwknopd's defaults with 0.0.0.0 allowed and `ports` open. */
export const spaLimits = (ports: SpaLimits["ports"]): SpaLimits => ({
  maxAgeS: 120,
  defaultOpenForS: 30,
  maxOpenForS: 300,
  requireSourceAddress: false,
  username: null,
  ports,
});
