/** What `nft` prints, read back: set elements (`nft -j list set`), our chain's rules, kept records. */
import type { KernelGrant } from "../../../core/firewall/common.js";
import type { KernelPortGrant } from "../listed.js";

/** Every element of `nft -j list set` output: its value as nft gives it, and the time it has left. */
function setElements(json: string): { val: unknown; remainingMs: number | null }[] {
  type Elem = string | { elem?: { val?: unknown; expires?: unknown } };
  const parsed = JSON.parse(json) as { nftables?: { set?: { elem?: Elem[] } }[] };
  const elements: { val: unknown; remainingMs: number | null }[] = [];
  for (const item of parsed.nftables ?? []) {
    for (const e of item.set?.elem ?? []) {
      if (typeof e === "string") elements.push({ val: e, remainingMs: null });
      else if (e.elem !== undefined) elements.push({ val: e.elem.val, remainingMs: typeof e.elem.expires === "number" ? e.elem.expires * 1000 : null });
    }
  }
  return elements;
}

/** Elements of `nft -j list set ...` of an address set: a bare value has no timeout, an object says when it `expires`. */
export function nftElements(json: string): KernelGrant[] {
  return setElements(json).flatMap(({ val, remainingMs }) => (typeof val === "string" ? [{ src: val, remainingMs }] : []));
}

/** Elements of `nft -j list set` of a per-port set: `{"concat": [addr, proto, port]}` values. */
export function nftSpaElements(json: string): KernelPortGrant[] {
  return setElements(json).flatMap(({ val, remainingMs }) => {
    const concat = typeof val === "object" && val !== null && "concat" in val && Array.isArray(val.concat) ? (val.concat as unknown[]) : [];
    const [src, proto, port] = concat;
    return typeof src === "string" && (proto === "tcp" || proto === "udp") && typeof port === "number" ? [{ src, port: { proto, port }, remainingMs }] : [];
  });
}

/**
 * The body of chain `name` in a listing of our table (`nft list table`), rules two tabs in; ""
 * for an emptied chain; null when the chain is not there. It ends at the chain's closing brace,
 * one tab in, which no rule line holds.
 */
export function chainBody(listing: string, name: string): string | null {
  const header = `\tchain ${name} {\n`;
  const at = listing.indexOf(header);
  return at < 0 ? null : listing.slice(at + header.length, listing.indexOf("\t}", at + header.length));
}

/** Lines of `nft list chain` that are rules, not the chain's own header or braces. */
export function countNftRules(listing: string): number {
  return listing
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !/^(table|chain|type) /.test(l) && l !== "}").length;
}

/** The rules' comments in `nft -j list chain` output: the kept records. */
export function ruleComments(json: string): string[] {
  const parsed = JSON.parse(json) as { nftables?: { rule?: { comment?: unknown } }[] };
  return (parsed.nftables ?? []).flatMap((item) => (typeof item.rule?.comment === "string" ? [item.rule.comment] : []));
}
