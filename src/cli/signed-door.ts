/**
 * What `knockgate knock --door NAME` needs of a signed door: its keys, SPA port and ports, read
 * from the same KNOCK_DOOR_<NAME>_* variables the daemon reads (keys also as `_FILE`).
 */
import type { SpaKeys } from "../core/spa/verify.js";
import type { HmacDigest } from "../core/spa/wire.js";
import type { PortSpec } from "../core/types.js";
import { parseEnum, parsePorts } from "../config/values.js";
import { DEFAULT_SPA_PORT } from "./spa-knock.js";

export interface SignedDoor {
  keys: SpaKeys;
  spaPort: number;
  ports: PortSpec[];
}

const asDigest = parseEnum<HmacDigest>(["sha256", "sha384", "sha512"]);

/**
 * The signed door NAME, or null when it has no SPA keys. Throws an Error naming the variable for a
 * value that cannot be used.
 */
export function readSignedDoor(env: Readonly<Record<string, string | undefined>>, name: string, readFile: (path: string) => string): SignedDoor | null {
  const v = (field: string) => `KNOCK_DOOR_${name}_${field}`;
  const secret = (field: string): string | undefined => {
    const file = env[`${v(field)}_FILE`];
    if (file === undefined) return env[v(field)];
    if (env[v(field)] !== undefined) throw new Error(`${v(field)}_FILE: ${v(field)} is set too; give the secret one way, not both`);
    return readFile(file).trim();
  };
  const keyText = secret("SPA_KEY");
  const hmacText = secret("SPA_HMAC_KEY");
  if (keyText === undefined && hmacText === undefined) return null;
  const key = (variable: string, text: string | undefined): Buffer => {
    if (text === undefined) throw new Error(`${variable} is not set: a signed door needs both SPA_KEY and SPA_HMAC_KEY (fwknop --key-gen prints them)`);
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) throw new Error(`${variable} is not base64 (the KEY_BASE64 or HMAC_KEY_BASE64 that fwknop --key-gen prints)`);
    return Buffer.from(text, "base64");
  };
  const field = <T>(variable: string, parse: (value: string) => T, fallback: string): T => {
    try {
      return parse(env[variable] ?? fallback);
    } catch (err) {
      throw new Error(`${variable}: ${(err as Error).message}`);
    }
  };
  const spaPort = field(v("SPA_PORT"), parsePorts, `${DEFAULT_SPA_PORT}/udp`)[0]!;
  if (spaPort.proto !== "udp") throw new Error(`${v("SPA_PORT")}: SPA datagrams are UDP; give PORT/udp`);
  return {
    keys: {
      encryptionKey: key(v("SPA_KEY"), keyText),
      hmacKey: key(v("SPA_HMAC_KEY"), hmacText),
      hmacDigest: field(v("SPA_HMAC_DIGEST"), asDigest, "sha256"),
    },
    spaPort: spaPort.port,
    ports: field(v("PORTS"), parsePorts, "22/tcp"),
  };
}
