/**
 * fwknopd's checks on an SPA datagram, in an order where a stranger's datagram costs at most one
 * HMAC: length, prefix and alphabet are free, the HMAC is the one hash a forgery gets, and only an
 * authentic datagram is looked up in the replay cache, decrypted and read. (fwknopd looks up the
 * replay cache before the HMAC; the answer is the same, since only authenticated datagrams are
 * ever recorded, but it would cost a flood a second hash.)
 */
import { hash, type KeyObject } from "node:crypto";
import { isBogusSource, parseAddress, formatIPv4, formatIPv6 } from "../packet/address.js";
import { hasPort, type Family, type PortSpec } from "../types.js";
import { isNatType, parseAccessMessage, parsePlaintext, SpaType } from "./message.js";
import type { ReplayCache } from "./replay.js";
import { SALTED_B64_PREFIX, decryptE, fullE, hasSaltedPrefix, isB64Text, payloadHmacMatches, type HmacDigest } from "./wire.js";

/** fwknopd's bounds on the UDP payload. */
export const MIN_SPA_LENGTH = 140;
export const MAX_SPA_LENGTH = 1500;

/**
 * What a door holds to read SPA datagrams: raw key bytes (the caller decodes KEY_BASE64 and
 * HMAC_KEY_BASE64). The HMAC key may be a KeyObject made once: every datagram, forged ones
 * included, costs an HMAC, and one over a KeyObject skips copying the key in (about 15% here).
 */
export interface SpaKeys {
  encryptionKey: Uint8Array;
  hmacKey: Uint8Array | KeyObject;
  hmacDigest: HmacDigest;
}

export interface SpaLimits {
  /** Largest |now - timestamp| accepted (fwknopd MAX_SPA_PACKET_AGE, 120 by default). */
  maxAgeS: number;
  /** Open-for when the client asks for none (fwknopd FW_ACCESS_TIMEOUT, 30 by default). */
  defaultOpenForS: number;
  /** Cap on what a client asks for with -f (fwknopd MAX_FW_TIMEOUT, 300 by default). */
  maxOpenForS: number;
  /** Refuse "0.0.0.0" (the client's -s, "whatever address this comes from"); fwknopd REQUIRE_SOURCE_ADDRESS. */
  requireSourceAddress: boolean;
  /** Only this username (the client's -U, else its login name); null: any. fwknopd REQUIRE_USERNAME. */
  username: string | null;
  /** Every port the datagram asks for must be one of these. */
  ports: readonly PortSpec[];
}

/** The packet as captured: its payload, and its source in the shape of Knock or SourceAddress. */
export interface SpaDatagram {
  payload: Uint8Array;
  source: { family: Family; src: string };
}

export interface SpaRequest {
  /** Canonical text of the address to open for (the packet's source if the client sent 0.0.0.0). */
  address: string;
  family: Family;
  ports: PortSpec[];
  openForS: number;
  username: string;
  /** The client's clock, Unix seconds. */
  timestamp: number;
  type: SpaType;
}

export type SpaRefusal =
  /** Payload shorter than fwknopd accepts. */
  | "too_short"
  /** Payload longer than fwknopd accepts. */
  | "too_long"
  /** Not an SPA datagram's shape: wrong alphabet, the Salted__ prefix left on, undecodable fields. */
  | "bad_format"
  /** HMAC does not match: another HMAC key or digest type, a tampered or foreign datagram. */
  | "bad_hmac"
  /** This exact datagram was accepted before. */
  | "replay"
  /** The HMAC matched but decryption did not: another encryption key. */
  | "bad_key"
  /** The inner digest does not match the message. */
  | "bad_digest"
  /** The client's timestamp is more than max age in the past. */
  | "stale"
  /** The client's timestamp is more than max age in the future: a client clock running ahead. */
  | "future"
  /** A command message (-C): never run. */
  | "command_refused"
  /** A NAT request (-N, --nat-local): not offered. */
  | "nat_refused"
  /** The username is not the one the door requires. */
  | "username_refused"
  /** 0.0.0.0 while a source address is required, or an address no grant may name (loopback, multicast...). */
  | "address_refused"
  /** A requested port is not among the door's ports. */
  | "port_not_allowed";

/** replayKey: the datagram's replay key (see replayKey), for the caller's own replay record. */
export type SpaVerdict = { ok: true; request: SpaRequest; replayKey: string } | { ok: false; result: SpaRefusal; detail: string };

const refuse = (result: SpaRefusal, detail: string): SpaVerdict => ({ ok: false, result, detail });
const NOT_B64 = refuse("bad_format", "not base64 text");
const SALTED = refuse("bad_format", `starts with ${SALTED_B64_PREFIX}, which fwknop clients cut off`);
const BAD_HMAC: Record<HmacDigest, SpaVerdict> = {
  sha256: badHmac("sha256"),
  sha384: badHmac("sha384"),
  sha512: badHmac("sha512"),
};
function badHmac(digest: HmacDigest): SpaVerdict {
  return refuse("bad_hmac", `the ${digest} HMAC does not match: another HMAC_KEY_BASE64 or --hmac-digest-type, or a changed datagram`);
}

/**
 * A datagram's replay key: the first 128 bits of the payload's SHA-256 as canonical IPv6 text, the
 * element of the door's kernel replay set (as both kernels list it, so an adopted listing matches)
 * and the memory front's key alike.
 */
export const replayKey = (payload: Uint8Array): string => formatIPv6(hash("sha256", payload, "buffer"), 0);

/**
 * Checks one datagram against one door. Records the datagram in `replay` once it is authenticated
 * and readable, whatever the later checks decide: each authentic datagram is usable once. `now` is
 * Unix seconds. `beforeHmac` runs once the free checks passed, before the HMAC: what it starts
 * overlaps the checks, and it runs for a forged datagram too.
 */
export function verifySpa(datagram: SpaDatagram, keys: SpaKeys, limits: SpaLimits, replay: ReplayCache, now: number, beforeHmac?: () => void): SpaVerdict {
  const { payload, source } = datagram;
  if (payload.length < MIN_SPA_LENGTH) return refuse("too_short", `${payload.length} bytes, fwknop datagrams have at least ${MIN_SPA_LENGTH}`);
  if (payload.length > MAX_SPA_LENGTH) return refuse("too_long", `${payload.length} bytes, fwknop datagrams have at most ${MAX_SPA_LENGTH}`);
  // Refusals up to the HMAC are what a flood gets: their verdicts are made once, not per datagram.
  if (!isB64Text(payload)) return NOT_B64;
  // The client always cuts this off; a datagram that still has it is another one with it pasted
  // on, which fwknopd refuses so that the same ciphertext cannot pass the replay cache twice.
  if (hasSaltedPrefix(payload)) return SALTED;
  beforeHmac?.();
  if (!payloadHmacMatches(payload, keys.hmacKey, keys.hmacDigest)) return BAD_HMAC[keys.hmacDigest];
  const e = fullE(payload, keys.hmacDigest);

  const key = replayKey(payload);
  if (replay.has(key, now)) return refuse("replay", "this datagram was received before");

  const decrypted = decryptE(e, keys.encryptionKey);
  if (!decrypted.ok) {
    return decrypted.reason === "bad_padding"
      ? refuse("bad_key", "the HMAC matched but the datagram does not decrypt: the door's encryption key differs from the client's KEY_BASE64")
      : refuse("bad_format", `the encrypted part is not salted AES ciphertext (${decrypted.reason})`);
  }
  const parsed = parsePlaintext(decrypted.plaintext);
  if (!parsed.ok) return refuse(parsed.result, parsed.detail);
  const msg = parsed.message;
  replay.add(key, msg.timestamp + limits.maxAgeS, now);

  const age = now - msg.timestamp;
  if (age > limits.maxAgeS) return refuse("stale", `sent ${age} s ago, more than the ${limits.maxAgeS} s allowed: a replay, or the client's clock is behind`);
  if (-age > limits.maxAgeS) return refuse("future", `stamped ${-age} s ahead, more than the ${limits.maxAgeS} s allowed: the client's clock is ahead`);
  if (msg.type === SpaType.command) return refuse("command_refused", "a command message (fwknop -C): commands are never run");
  if (isNatType(msg.type)) return refuse("nat_refused", "a NAT request (fwknop -N or --nat-local): NAT is not offered");
  if (limits.username !== null && msg.username !== limits.username) return refuse("username_refused", `username "${msg.username}" is not the one this door requires (fwknop -U)`);

  const access = parseAccessMessage(msg.message);
  if (!access) return refuse("bad_format", "the access message is not IP,proto/port[,proto/port...]");
  let address: string;
  let family: Family;
  if (access.address === "0.0.0.0") {
    // The client's -s: "the address this datagram comes from".
    if (limits.requireSourceAddress) return refuse("address_refused", "the client sent 0.0.0.0 (fwknop -s) but this door requires an address (fwknop -a)");
    ({ src: address, family } = source);
  } else {
    const parsedAddress = parseAddress(access.address);
    if (!parsedAddress) return refuse("bad_format", "the address in the access message is not an IP address");
    family = parsedAddress.family;
    if (isBogusSource(parsedAddress.addr, 0, family)) return refuse("address_refused", `${access.address} is an address no grant may name (unspecified, loopback, link-local, multicast or reserved)`);
    address = family === 4 ? formatIPv4(parsedAddress.addr, 0) : formatIPv6(parsedAddress.addr, 0);
  }

  const denied = access.ports.filter((p) => !hasPort(limits.ports, p));
  if (denied.length > 0) return refuse("port_not_allowed", `${denied.map((p) => `${p.proto}/${p.port}`).join(",")} not among this door's ports`);

  const openForS = msg.clientTimeoutS ? Math.min(msg.clientTimeoutS, limits.maxOpenForS) : limits.defaultOpenForS;
  return { ok: true, request: { address, family, ports: access.ports, openForS, username: msg.username, timestamp: msg.timestamp, type: msg.type }, replayKey: key };
}
