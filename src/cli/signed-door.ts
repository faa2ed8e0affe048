/**
 * What `knockgate knock --door NAME` needs of a signed door: its keys, SPA port and ports, read
 * with the daemon's own parsers (config/spa.ts, secret files) from the door's variables only, so
 * a client env need hold nothing but its doors.
 */
import { parseDoorSpa, type SpaField } from "../config/spa.js";
import { resolveSecretFiles, type ReadFile } from "../config/secret-files.js";
import { DEFAULTS } from "../config/config.js";
import { parsePorts } from "../config/values.js";
import { ConfigError, type ConfigProblem } from "../core/errors.js";
import type { PortSpec, SpaSettings } from "../core/types.js";

export interface SignedDoor {
  spa: SpaSettings;
  ports: PortSpec[];
}

/**
 * The signed door NAME, or null when neither of its keys is set. Throws a ConfigError listing
 * every variable of the door that cannot be used (never its value).
 */
export function readSignedDoor(env: Readonly<Record<string, string | undefined>>, name: string, readFile: ReadFile): SignedDoor | null {
  const v = (field: string) => `KNOCK_DOOR_${name}_${field}`;
  const own = Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith(v("SPA_")) || k === v("PORTS")));
  const keySet = (field: SpaField) => own[v(field)] !== undefined || own[`${v(field)}_FILE`] !== undefined;
  if (!keySet("SPA_KEY") && !keySet("SPA_HMAC_KEY")) return null;

  const { env: resolved, problems } = resolveSecretFiles(own, readFile);
  const report = (variable: string, err: unknown) => problems.push({ variable, message: (err as Error).message });
  for (const [field, other] of [["SPA_KEY", "SPA_HMAC_KEY"], ["SPA_HMAC_KEY", "SPA_KEY"]] as const) {
    if (keySet(field) && !keySet(other)) problems.push({ variable: v(other), message: "must be set too: a signed door needs both keys (fwknop --key-gen prints KEY_BASE64 and HMAC_KEY_BASE64)" });
  }
  const spa = parseDoorSpa(
    (field) => resolved[v(field)] !== undefined,
    (field, parse, fallback) => {
      const text = resolved[v(field)];
      if (text === undefined) return undefined;
      try {
        return parse(text);
      } catch (err) {
        report(v(field), err);
        return fallback;
      }
    },
  );
  let ports: PortSpec[] = [];
  try {
    ports = parsePorts(resolved[v("PORTS")] ?? DEFAULTS.PORTS);
  } catch (err) {
    report(v("PORTS"), err);
  }
  if (problems.length > 0 || spa === null) throw new ConfigError(problems satisfies ConfigProblem[]);
  return { spa, ports };
}
