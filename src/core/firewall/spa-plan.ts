/**
 * The firewall plan's part for signed doors, as data like the rest of plan.ts.
 *
 * A signed datagram opens only the ports it asks for, so its grants cannot live in the door's
 * address set (which opens every port of the door): each signed door gets a second set per family
 * keyed by (address, protocol, port), with kernel timeouts, and one rule per target group that
 * accepts a packet whose source, protocol and destination port are in it. Sequence grants are
 * untouched.
 *
 * Datagrams already accepted are kept in one more kernel set per signed door, so that a restarted
 * daemon still refuses them and one door's key holder cannot crowd out another door's datagrams:
 * the first 128 bits of each datagram's SHA-256 written as an IPv6 address, each with a timeout that
 * runs until the datagram is stale anyway. Adding is the check: an add that finds the element
 * present fails, atomically, in the kernel. The daemon keeps an index of each set
 * (core/spa/replay-index.ts) and makes room in a full one itself.
 */
import type { Config, Door } from "../types.js";

/**
 * Datagrams remembered per signed door. Each stays until its timestamp is past the door's max age
 * (at most 2 x SPA_MAX_AGE, 240 s by default), so this holds about 270 accepted datagrams per
 * second, sustained; only datagrams with a valid HMAC get this far, so filling it takes the door's
 * key. At the bound the daemon deletes the entry that expires first (ReplayIndex) before adding:
 * a new datagram is never refused for want of room.
 */
export const REPLAY_SET_SIZE = 65536;

export const signedDoors = (config: Pick<Config, "doors">): Door[] => config.doors.filter((d) => d.spa !== null);

/** Each (address, port) is an entry: room for KNOCK_MAX_GRANTS grants of every port of the door (`ports` of them). */
export const spaSetSize = (grantSetSize: number, ports: number): number => grantSetSize * Math.max(1, ports);

