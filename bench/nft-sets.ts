/** Readings of nft's set listings, for the contenders whose sets live in nftables (their elements: the daemon's own reader, adapters/firewall/nftables/listing.ts). Pure. */

interface NftJsonSet {
  table?: string;
  name?: string;
  size?: number;
  elem?: unknown[];
}

function jsonSets(json: string): NftJsonSet[] {
  const parsed = JSON.parse(json) as { nftables?: { set?: NftJsonSet }[] };
  return (parsed.nftables ?? []).flatMap((o) => (o.set ? [o.set] : []));
}

export interface SetFill {
  set: string;
  elements: number;
  /** The set's declared bound (`size`); null when it has none. */
  size: number | null;
}

/** How full each set of `table` whose name starts with `prefix` is, from `nft -j list sets` output. */
export function nftSetFill(json: string, table: string, prefix: string): SetFill[] {
  return jsonSets(json)
    .filter((s) => s.table === table && s.name?.startsWith(prefix))
    .map((s) => ({ set: s.name ?? "", elements: s.elem?.length ?? 0, size: s.size ?? null }));
}

/** nft's duration text ("1h2m3s400ms", "18s700ms") in milliseconds. */
export function nftDurationMs(text: string): number {
  const unit: Record<string, number> = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, ms: 1 };
  let ms = 0;
  for (const m of text.matchAll(/(\d+)(ms|d|h|m|s)/g)) ms += Number(m[1]) * (unit[m[2]!] ?? 0);
  return ms;
}
