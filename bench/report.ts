/** The report: targets, a console table, Markdown, JSON and one SVG chart. */
import type { ContenderId } from "./contenders.js";
import type { DecoderResult } from "./decoder.js";
import type { ClusterResult } from "./cluster.js";
import type { FloodStage, GrantsResult, IdleResult, LatencyResult, Params, SweepResult } from "./scenarios.js";

export interface ContenderReport {
  id: ContenderId;
  label: string;
  status: "ok" | "failed" | "unavailable";
  errors: string[];
  idle?: IdleResult;
  latency?: LatencyResult;
  flood?: FloodStage[];
  sweep?: SweepResult;
  grants?: GrantsResult;
}

export interface Target {
  id: string;
  text: string;
  /** null: not measured or inconclusive. */
  met: boolean | null;
  detail: string;
}

export interface Report {
  mode: "full" | "smoke";
  startedAt: string;
  durationS: number;
  host: { cpus: number; cpuModel: string; kernel: string; node: string; knockd: string; fwknopd?: string; nft: string; iptables: string; srcDigest: string };
  params: Params;
  contenders: ContenderReport[];
  decoder?: DecoderResult;
  cluster?: ClusterResult;
  targets: Target[];
}

const f = (x: number | null | undefined, d = 2): string => (x === null || x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(d));
const ms = (x: number | null | undefined): string => {
  if (x === null || x === undefined || !Number.isFinite(x)) return "-";
  return x < 1 ? x.toFixed(2) : x < 10 ? x.toFixed(1) : x.toFixed(0);
};
const kpps = (x: number): string => (x >= 1000 ? `${Math.round(x / 1000)}k` : String(x));

function byId(r: Report, id: ContenderId): ContenderReport | undefined {
  return r.contenders.find((c) => c.id === id && c.status === "ok");
}

/** Target 4b's measure for one contender: the kernel path's added cost per SYN with the grants, against 1 us. */
function perSynVerdict(g: GrantsResult | undefined): Pick<Target, "met" | "detail"> {
  const c = g?.addedCostUs;
  const k = g?.synPathNs?.added;
  if (!g || !c || !k) return { met: null, detail: "not measured" };
  if (g.invalid.length > 0) return { met: null, detail: `not judged, the hiding did not hold: ${g.invalid.join("; ")}` };
  return {
    met: k.hi <= 1000 ? true : k.lo > 1000 ? false : null,
    detail: `kernel path ${f(k.estimate / 1000, 3)} us per SYN, 95% CI [${f(k.lo / 1000, 3)}, ${f(k.hi / 1000, 3)}]; whole connect ${f(c.estimate, 1)} us [${f(c.lo, 1)}, ${f(c.hi, 1)}] (connect noise is wider than 1 us)`,
  };
}

/** The fullest of a sweep's kernel knock sets. */
function fullestSet(s: SweepResult | undefined): { set: string; elements: number; bound: number } | null {
  const fill = s?.knockSets;
  if (!fill || fill.sets.length === 0) return null;
  const top = fill.sets.reduce((a, b) => (b.elements > a.elements ? b : a));
  return { set: top.set, elements: top.elements, bound: fill.bound };
}

export function evaluateTargets(r: Report): Target[] {
  const t: Target[] = [];
  const kg = byId(r, "knockgate");
  const kd = byId(r, "knockd");
  const lat = kg?.latency;
  t.push({ id: "1a", text: "knock-to-open p50 <= 3 ms", met: lat ? lat.p50 <= 3 : null, detail: lat ? `p50 ${ms(lat.p50)} ms` : "not measured" });
  t.push({ id: "1b", text: "knock-to-open p99 <= 10 ms", met: lat ? lat.p99 <= 10 && lat.opened === lat.n : null, detail: lat ? `p99 ${ms(lat.p99)} ms, ${lat.opened}/${lat.n} opened` : "not measured" });
  const ratio = lat && kd?.latency ? kd.latency.p50 / lat.p50 : NaN;
  t.push({ id: "1c", text: ">= 10x faster than knockd at p50", met: Number.isFinite(ratio) ? ratio >= 10 : null, detail: Number.isFinite(ratio) ? `${ratio.toFixed(1)}x (knockd p50 ${ms(kd?.latency?.p50)} ms)` : "not measured" });
  const fl = kg?.flood ?? [];
  t.push({
    id: "2a",
    text: "flood: 100% of legitimate knocks open at every rate",
    met: fl.length ? fl.every((s) => s.opened === s.n) : null,
    detail: fl.map((s) => `${kpps(s.requestedPps)}: ${s.openedPct}%`).join(", ") || "not measured",
  });
  t.push({
    id: "2b",
    text: "flood: p99 <= 50 ms at every rate",
    met: fl.length ? fl.every((s) => s.p99 <= 50) : null,
    detail: fl.map((s) => `${kpps(s.requestedPps)}: ${ms(s.p99)} ms`).join(", ") || "not measured",
  });
  const sw = kg?.sweep;
  const flat = sw && sw.rssGrowthAfterCapMb !== null ? sw.rssGrowthAfterCapMb <= 10 : null;
  t.push({ id: "3a", text: "sweep: RSS < 150 MB", met: sw && sw.rssMaxMb !== null ? sw.rssMaxMb < 150 : null, detail: sw ? `max ${f(sw.rssMaxMb, 1)} MB` : "not measured" });
  t.push({
    id: "3b",
    text: "sweep: RSS flat after KNOCK_MAX_TRACKED is reached (<= 10 MB growth)",
    met: flat,
    detail: sw ? `+${f(sw.rssGrowthAfterCapMb, 1)} MB after the cap (tracked max ${sw.trackedMax ?? "-"}, reached at ${f(sw.capReachedAtS, 1)} s)` : "not measured",
  });
  t.push({ id: "3c", text: "sweep: legitimate knocks keep opening", met: sw ? sw.opened === sw.n : null, detail: sw ? `${sw.opened}/${sw.n}, p99 ${ms(sw.p99)} ms` : "not measured" });
  const g = kg?.grants;
  t.push({
    id: "4a",
    text: `grants: all ${r.params.grants} installed`,
    met: g ? g.allInstalledS !== null : null,
    detail: g
      ? g.allInstalledS !== null
        ? `all in ${f(g.allInstalledS, 2)} s after the first knock (${g.installRatePerS}/s)`
        : `${g.installed} of ${g.requested} (${g.requested - g.installed} knocks lost), the last ${f(g.lastInstalledS, 2)} s after the first knock`
      : "not measured",
  });
  const c = g?.addedCostUs;
  t.push({ id: "4b", text: "grants: added cost per new unrelated connection within 1 us (judged on the kernel path per SYN)", ...perSynVerdict(g) });
  t.push({
    id: "4b'",
    text: "(the same seen by a client: whole connect(), informative)",
    met: c && g.invalid.length === 0 ? (c.hi <= 1 ? true : c.lo > 1 ? false : null) : null,
    detail: c
      ? `${f(c.estimate, 2)} us, 95% CI [${f(c.lo, 2)}, ${f(c.hi, 2)}]${c.hi > 1 && c.lo <= 1 ? " (inconclusive: noise wider than 1 us)" : c.hi < 0 ? " (below zero: the method's own bias, a few us, exceeds the effect)" : ""}`
      : "not measured",
  });
  t.push({
    id: "4c",
    text: "grants: all expire on time",
    met: g?.expiry ? g.expiry.onTime : null,
    detail: g?.expiry ? `OPEN_FOR ${g.expiry.openForS} s: first gone ${f(g.expiry.firstGoneAfterFirstInS, 1)} s after the first went in, all gone ${f(g.expiry.allGoneAfterLastInS, 1)} s after the last` : "not measured",
  });
  const spa = byId(r, "knockgate-spa");
  const fw = byId(r, "fwknopd");
  const spaLat = spa?.latency;
  const spaRatio = spaLat && fw?.latency ? fw.latency.p50 / spaLat.p50 : NaN;
  t.push({
    id: "6a",
    text: "signed door: open p50 faster than fwknopd's",
    met: Number.isFinite(spaRatio) ? spaRatio > 1 : null,
    detail: spaLat ? `p50 ${ms(spaLat.p50)} / p99 ${ms(spaLat.p99)} ms, ${spaLat.opened}/${spaLat.n} opened${Number.isFinite(spaRatio) ? `; ${spaRatio.toFixed(1)}x faster (fwknopd p50 ${ms(fw?.latency?.p50)} ms)` : ""}` : "not measured",
  });
  const spaFlood = spa?.flood ?? [];
  t.push({
    id: "6b",
    text: "signed door: 100% of legitimate SPA opens under a flood of random datagrams to the SPA port, at every rate",
    met: spaFlood.length ? spaFlood.every((s) => s.opened === s.n) : null,
    detail: spaFlood.map((s) => `${kpps(s.requestedPps)}: ${s.openedPct}%`).join(", ") || "not measured",
  });
  t.push({
    id: "6c",
    text: "signed door: zero chance grants",
    met: spaFlood.length ? spaFlood.every((s) => s.chanceGrants === 0) : null,
    detail: spaFlood.length ? spaFlood.map((s) => `${kpps(s.requestedPps)}: ${s.chanceGrants}`).join(", ") : "not measured",
  });
  const d = r.decoder;
  t.push({
    id: "5a",
    text: "capture+decode+state path >= 500k pps on one core (flood mix)",
    met: d ? d.pathFloodPps >= 500_000 : null,
    detail: d ? `${kpps(d.pathFloodPps)} pps (decoder alone ${kpps(d.decodeOnlyPps)} pps)` : "not measured",
  });
  t.push({
    id: "5b",
    text: "same, sweep mix (every frame a new source: state insert + eviction)",
    met: d ? d.pathSweepPps >= 500_000 : null,
    detail: d ? `${kpps(d.pathSweepPps)} pps` : "not measured",
  });
  const cl = r.cluster;
  t.push({
    id: "7a",
    text: "cluster: a grant in every other node within 100 ms (p99)",
    met: cl ? cl.lagP99Ms <= 100 && cl.notes.length === 0 : null,
    detail: cl ? `p50 ${ms(cl.lagP50Ms)} ms, p99 ${ms(cl.lagP99Ms)} ms over ${cl.rounds} grants x 2 nodes` : "not measured",
  });
  t.push({
    id: "7b",
    text: `cluster: with ${cl ? kpps(cl.liveGrants) : "10k"} live KnockGrants, memory and watch lag bounded`,
    met: cl ? cl.loadedLagP99Ms <= 100 && cl.notes.length === 0 : null,
    detail: cl
      ? `RSS ${cl.rssBeforeMb.map((m) => f(m, 0)).join("/")} -> ${cl.rssLoadedMb.map((m) => f(m, 0)).join("/")} MB; lag then p50 ${ms(cl.loadedLagP50Ms)} ms, p99 ${ms(cl.loadedLagP99Ms)} ms; all applied in ${f(cl.applyAllS, 1)} s; a restarted node re-listed and applied them in ${f(cl.relistS, 1)} s`
      : "not measured",
  });
  t.push(...kernelEngineTargets(r));
  return t;
}

/** Issue 24's targets for the kernel engine, against the hand-compiled door and the capture engine. */
function kernelEngineTargets(r: Report): Target[] {
  const t: Target[] = [];
  const ke = byId(r, "knockgate-kernel");
  const lat = ke?.latency;
  const door = byId(r, "kernel")?.latency;
  const ratio = lat && door ? lat.p50 / door.p50 : NaN;
  t.push({
    id: "8a",
    text: "kernel engine: knock-to-open p50 within 2x of the hand-compiled nftables door's",
    met: Number.isFinite(ratio) ? ratio <= 2 : null,
    detail: lat ? `p50 ${ms(lat.p50)} ms${Number.isFinite(ratio) ? `, ${ratio.toFixed(2)}x the hand-compiled door's ${ms(door?.p50)} ms` : " (hand-compiled door not measured)"}` : "not measured",
  });
  t.push({ id: "8b", text: "kernel engine: knock-to-open p99 under 1 ms", met: lat ? lat.p99 < 1 && lat.opened === lat.n : null, detail: lat ? `p99 ${ms(lat.p99)} ms, ${lat.opened}/${lat.n} opened` : "not measured" });
  const fl = ke?.flood ?? [];
  const captureFlood = byId(r, "knockgate")?.flood ?? [];
  const chance = (s: FloodStage) => {
    const other = captureFlood.find((x) => x.requestedPps === s.requestedPps);
    return s.requestedPps > 0 ? `, ${s.chanceGrants} chance completions${other ? ` (capture engine ${other.chanceGrants})` : ""}` : "";
  };
  t.push({
    id: "8c",
    text: "kernel engine: 100% of legitimate knocks open under spoofed floods, at every rate (up to 50k pps)",
    met: fl.length ? fl.every((s) => s.opened === s.n) : null,
    detail: fl.map((s) => `${kpps(s.requestedPps)}: ${s.openedPct}%${chance(s)}`).join("; ") || "not measured",
  });
  const sw = ke?.sweep;
  const top = fullestSet(sw);
  t.push({
    id: "8d",
    text: "kernel engine: knock sets within KNOCK_MAX_TRACKED and daemon RSS bounded under the sweep (< 150 MB, <= 10 MB growth)",
    met: sw && top && sw.rssMaxMb !== null && sw.rssGrowthAfterCapMb !== null ? top.elements <= top.bound && sw.rssMaxMb < 150 && sw.rssGrowthAfterCapMb <= 10 : null,
    detail: sw
      ? `fullest knock set ${top ? `${top.set} ${top.elements} of ${top.bound}` : "-"}; RSS start/max/end ${f(sw.rssStartMb, 0)}/${f(sw.rssMaxMb, 0)}/${f(sw.rssEndMb, 0)} MB, +${f(sw.rssGrowthAfterCapMb, 1)} MB from the first quarter on; legitimate knocks ${sw.opened}/${sw.n}`
      : "not measured",
  });
  t.push({ id: "8e", text: `kernel engine: ${r.params.grants} grants at constant per-packet cost (as 4b)`, ...perSynVerdict(ke?.grants) });
  // Each signed door against the sequence door on its own backend: nftables writes the replay
  // record and the grant in one transaction, ipset (no transactions) in two round trips.
  const signedNft = byId(r, "knockgate-spa-nft")?.latency;
  const sequenceNft = byId(r, "knockgate-nft")?.latency;
  const versus = (signed: LatencyResult | undefined, sequence: LatencyResult | undefined) => (signed && sequence ? signed.p50 / sequence.p50 : NaN);
  const nftRatio = versus(signedNft, sequenceNft);
  const ipsetRatio = versus(byId(r, "knockgate-spa")?.latency, byId(r, "knockgate")?.latency);
  t.push({
    id: "8f",
    text: "signed door, replay record and grant in one transaction (nftables): p50 within 1.2x of a sequence door's in capture mode",
    met: Number.isFinite(nftRatio) ? nftRatio <= 1.2 && signedNft?.opened === signedNft?.n : null,
    detail: Number.isFinite(nftRatio)
      ? `p50 ${ms(signedNft?.p50)} ms, ${nftRatio.toFixed(2)}x the nftables sequence door's ${ms(sequenceNft?.p50)} ms` +
        (Number.isFinite(ipsetRatio) ? `; iptables+ipset (two round trips): ${ipsetRatio.toFixed(2)}x` : "")
      : "not measured",
  });
  return t;
}

// ---------------------------------------------------------------------------------------------
// table

function rows(r: Report): { cols: ContenderReport[]; lines: [string, ...string[]][] } {
  const cols = r.contenders.filter((c) => c.status !== "unavailable");
  const kernel = byId(r, "kernel");
  const knockgateLat = byId(r, "knockgate")?.latency;
  const lines: [string, ...string[]][] = [];
  const row = (label: string, cell: (c: ContenderReport) => string) => lines.push([label, ...cols.map((c) => (c.status === "ok" ? cell(c) : "FAILED"))]);
  row("0 idle: CPU % of a core / RSS MB", (c) => (c.idle?.cpuPct != null ? `${f(c.idle.cpuPct, 2)} / ${f(c.idle.rssMb, 0)}` : "-"));
  row("1 knock-to-open p50 / p99 ms", (c) => (c.latency ? `${ms(c.latency.p50)} / ${ms(c.latency.p99)}` : "-"));
  row("  opened, rounds", (c) => (c.latency ? `${c.latency.opened}/${c.latency.n}` : "-"));
  row("  first knock after start ms", (c) => ms(c.latency?.coldMs));
  row("  0.1 ms probes: p50 / p99 ms", (c) => (c.latency?.fine ? `${ms(c.latency.fine.p50)} / ${ms(c.latency.fine.p99)}` : "-"));
  row("  daemon-measured mean ms", (c) => ms(c.latency?.daemonMeanMs));
  row("  p50 vs kernel-only", (c) => (c.latency && kernel?.latency ? `${(c.latency.p50 / kernel.latency.p50).toFixed(1)}x` : "-"));
  row("  p50 vs knockgate", (c) => (c.latency && knockgateLat && c.id !== "knockgate-spa" && c.id !== "fwknopd" ? `${(c.latency.p50 / knockgateLat.p50).toFixed(1)}x` : "-"));
  const signedLat = byId(r, "knockgate-spa")?.latency;
  row("  p50 vs knockgate signed door", (c) => (c.latency && signedLat && (c.id === "fwknopd" || c.id === "knockgate-spa") ? `${(c.latency.p50 / signedLat.p50).toFixed(1)}x` : "-"));
  for (const rate of r.params.floodRates) {
    const st = (c: ContenderReport) => c.flood?.find((s) => s.requestedPps === rate);
    row(`2 flood ${kpps(rate)} pps: opened, p99 ms`, (c) => {
      const s = st(c);
      return s ? `${s.openedPct}% ${ms(s.p99)}` : "-";
    });
    if (rate > 0) row(`  sent pps / daemon CPU %`, (c) => (st(c) ? `${kpps(st(c)!.achievedPps)} / ${f(st(c)!.cpuPct, 0)}` : "-"));
    if (rate > 0) row(`  chance grants / capture loss %`, (c) => (st(c) ? `${st(c)!.chanceGrants} / ${f(st(c)!.captureLossPct, 1)}` : "-"));
  }
  row(`3 sweep ${kpps(r.params.sweepSources)} v6 srcs: opened, p99`, (c) => (c.sweep ? `${c.sweep.openedPct}% ${ms(c.sweep.p99)}` : "-"));
  row("  sent pps / daemon CPU %", (c) => (c.sweep ? `${kpps(c.sweep.achievedPps)} / ${f(c.sweep.cpuPct, 0)}` : "-"));
  row("  RSS start / max / end MB", (c) => (c.sweep?.rssMaxMb !== null && c.sweep ? `${f(c.sweep.rssStartMb, 0)}/${f(c.sweep.rssMaxMb, 0)}/${f(c.sweep.rssEndMb, 0)}` : "-"));
  row("  RSS growth after cap MB", (c) => f(c.sweep?.rssGrowthAfterCapMb, 1));
  row("  fullest knock set / bound", (c) => {
    const top = fullestSet(c.sweep);
    return top ? `${top.elements}/${top.bound}` : "-";
  });
  row(`4 grants ${kpps(r.params.grants)}: installed, time s`, (c) =>
    c.grants ? `${c.grants.installed} ${c.grants.allInstalledS !== null ? f(c.grants.allInstalledS, 2) : `(${f(c.grants.lastInstalledS, 1)})`}` : "-",
  );
  row("  capture loss %", (c) => f(c.grants?.captureLossPct, 1));
  row("  booked by the daemon, by s", (c) => (c.grants?.booked ? `${c.grants.booked.grants} ${f(c.grants.booked.byS, 2)}` : "-"));
  row("  unrelated connect, hidden/with us", (c) => (c.grants ? `${f(c.grants.connect[0]?.trimmedMeanUs, 0)}/${f(c.grants.connect[1]?.trimmedMeanUs, 0)}` : "-"));
  row("  added cost us [95% CI]", (c) => (c.grants?.addedCostUs ? `${f(c.grants.addedCostUs.estimate, 1)} [${f(c.grants.addedCostUs.lo, 1)},${f(c.grants.addedCostUs.hi, 1)}]` : "-"));
  row("  kernel path/SYN hidden/with ns", (c) => (c.grants?.synPathNs ? `${c.grants.synPathNs.hidden}/${c.grants.synPathNs.present}` : "-"));
  row("  added ns/SYN [95% CI]", (c) => {
    const a = c.grants?.synPathNs?.added;
    return a ? `${f(a.estimate, 0)} [${f(a.lo, 0)},${f(a.hi, 0)}]` : "-";
  });
  row("  hiding held / blocks s", (c) => (c.grants ? `${c.grants.invalid.length === 0 ? "yes" : "NO"} / ${f(c.grants.blocksS, 1)}` : "-"));
  row("  expiry (all gone after last in, s)", (c) => (c.grants ? (c.grants.expiry ? `${c.grants.expiry.onTime ? "on time" : "LATE"} ${f(c.grants.expiry.allGoneAfterLastInS, 1)}` : "never") : "-"));
  row("5 path pps (flood / sweep mix)", (c) => (c.id === "knockgate" && r.decoder ? `${kpps(r.decoder.pathFloodPps)} / ${kpps(r.decoder.pathSweepPps)}` : "-"));
  return { cols, lines };
}

export function consoleTable(r: Report): string {
  const { cols, lines } = rows(r);
  const header: [string, ...string[]] = ["", ...cols.map((c) => c.id)];
  const all = [header, ...lines];
  const widths = header.map((_, i) => Math.max(...all.map((l) => (l[i] ?? "").length)));
  const fmt = (l: string[]) => l.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ");
  const out = [
    `knockgate benchmark (${r.mode}), ${r.startedAt}, ${r.durationS.toFixed(0)} s; ${r.host.cpus} CPUs ${r.host.cpuModel}, kernel ${r.host.kernel}, node ${r.host.node}`,
    fmt(header),
    ...lines.map(fmt),
    "",
    "targets (knockgate):",
    ...r.targets.map((t) => `  ${t.met === true ? "MET " : t.met === false ? "MISS" : "  ? "} ${t.id} ${t.text}: ${t.detail}`),
  ];
  for (const c of r.contenders) {
    if (c.status !== "ok") out.push(`${c.id}: ${c.status}: ${c.errors.join("; ")}`);
    else if (c.errors.length) out.push(`${c.id}: ${c.errors.join("; ")}`);
  }
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------
// markdown

export function markdown(r: Report): string {
  const { cols, lines } = rows(r);
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const out = [
    `# knockgate benchmark (${r.mode})`,
    "",
    `${r.startedAt}, ${r.durationS.toFixed(0)} s, knockgate sources sha256:${r.host.srcDigest}. Host: ${r.host.cpus} CPUs (${r.host.cpuModel}), kernel ${r.host.kernel}, node ${r.host.node}, ${r.host.knockd}, ${r.host.fwknopd ?? "fwknopd -"}, ${r.host.nft}, ${r.host.iptables}.`,
    "",
    "Contenders: " + r.contenders.map((c) => `**${c.id}** = ${c.label}${c.status !== "ok" ? ` (${c.status})` : ""}`).join("; ") + ".",
    "",
    "![latency and flood chart](latest.svg)",
    "",
    `| | ${cols.map((c) => c.id).join(" | ")} |`,
    `|---|${cols.map(() => "---:").join("|")}|`,
    ...lines.map((l) => `| ${l.map(esc).join(" | ")} |`),
    "",
    "## Targets (knockgate)",
    "",
    "| | target | result | measured |",
    "|---|---|---|---|",
    ...r.targets.map((t) => `| ${t.id} | ${esc(t.text)} | ${t.met === true ? "met" : t.met === false ? "**missed**" : "inconclusive"} | ${esc(t.detail)} |`),
    "",
    "## Notes from the run",
    "",
  ];
  for (const c of r.contenders) {
    const notes = [
      ...c.errors,
      ...(c.latency?.notes ?? []).map((n) => `latency: ${n}`),
      ...(c.flood ?? []).flatMap((s) => s.notes.map((n) => `flood ${kpps(s.requestedPps)}: ${n}`)),
      ...(c.sweep?.notes ?? []).map((n) => `sweep: ${n}`),
      ...(c.grants?.notes ?? []).map((n) => `grants: ${n}`),
    ];
    for (const n of notes) out.push(`- ${c.id}: ${n}`);
  }
  for (const n of r.cluster?.notes ?? []) out.push(`- cluster: ${n}`);
  out.push("", "Method, caveats and how to read this: docs/bench.md.", "");
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------
// SVG (by hand: no chart library)

const COLORS: Record<ContenderId, string> = { knockgate: "#1b7f3b", "knockgate-nft": "#6cc08b", "knockgate-kernel": "#17a2b8", knockd: "#c0392b", kernel: "#2c5aa0", "knockgate-spa": "#8e44ad", "knockgate-spa-nft": "#b07cc6", fwknopd: "#d68910" };
const escXml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function svg(r: Report): string {
  const W = 1200;
  const H = 540;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="20" y="24" font-size="16" font-weight="bold">knockgate benchmark (${r.mode}, ${escXml(r.startedAt)})</text>`,
  ];
  const cs = r.contenders.filter((c) => c.status === "ok");

  // Left: ECDF of knock-to-open latency, log x.
  const L = { x: 70, y: 60, w: 480, h: 380 };
  const xmin = Math.log10(0.05);
  const xmax = Math.log10(2000);
  const X = (v: number) => L.x + ((Math.log10(Math.max(0.05, Math.min(2000, v))) - xmin) / (xmax - xmin)) * L.w;
  const Y = (p: number) => L.y + L.h - p * L.h;
  out.push(`<text x="${L.x}" y="${L.y - 12}" font-weight="bold">1. Knock-to-open latency (share of rounds open by t; 0.15-1 ms probes)</text>`);
  out.push(`<rect x="${L.x}" y="${L.y}" width="${L.w}" height="${L.h}" fill="none" stroke="#999"/>`);
  for (const v of [0.1, 1, 10, 100, 1000]) {
    out.push(`<line x1="${X(v)}" y1="${L.y}" x2="${X(v)}" y2="${L.y + L.h}" stroke="#eee"/>`);
    out.push(`<text x="${X(v)}" y="${L.y + L.h + 16}" text-anchor="middle">${v}</text>`);
  }
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    out.push(`<line x1="${L.x}" y1="${Y(p)}" x2="${L.x + L.w}" y2="${Y(p)}" stroke="#eee"/>`);
    out.push(`<text x="${L.x - 6}" y="${Y(p) + 4}" text-anchor="end">${p * 100}%</text>`);
  }
  out.push(`<text x="${L.x + L.w / 2}" y="${L.y + L.h + 34}" text-anchor="middle">ms from the last knock sent to an accepted SYN (log scale)</text>`);
  const drawn = cs.filter((c) => (c.latency?.samples ?? []).some((v) => v !== null));
  drawn.forEach((c, i) => {
    const s = c.latency!.samples.filter((v): v is number => v !== null).sort((a, b) => a - b);
    const n = c.latency!.n;
    let d = `M ${X(s[0]!).toFixed(1)} ${Y(0)}`;
    s.forEach((v, k) => {
      d += ` L ${X(v).toFixed(1)} ${Y(k / n).toFixed(1)} L ${X(v).toFixed(1)} ${Y((k + 1) / n).toFixed(1)}`;
    });
    out.push(`<path d="${d}" fill="none" stroke="${COLORS[c.id]}" stroke-width="2"/>`);
    // Legend in the bottom right, where every curve has already reached 100%.
    const ly = L.y + L.h - 14 - 16 * (drawn.length - 1 - i);
    out.push(`<line x1="${L.x + L.w - 230}" y1="${ly - 4}" x2="${L.x + L.w - 210}" y2="${ly - 4}" stroke="${COLORS[c.id]}" stroke-width="3"/>`);
    out.push(`<text x="${L.x + L.w - 205}" y="${ly}">${escXml(c.id)}: p50 ${ms(c.latency!.p50)}, p99 ${ms(c.latency!.p99)} ms</text>`);
  });

  // Right: flood success per rate (bars) with p99 labels.
  const R = { x: 680, y: 60, w: 480, h: 380 };
  const rates = r.params.floodRates;
  const fcs = cs.filter((c) => c.flood?.length);
  out.push(`<text x="${R.x}" y="${R.y - 12}" font-weight="bold">2. Legitimate knocks opened under a spoofed SYN flood (label: p99 ms)</text>`);
  out.push(`<rect x="${R.x}" y="${R.y}" width="${R.w}" height="${R.h}" fill="none" stroke="#999"/>`);
  const RY = (pct: number) => R.y + R.h - (pct / 100) * (R.h - 30);
  for (const p of [0, 25, 50, 75, 100]) {
    out.push(`<line x1="${R.x}" y1="${RY(p)}" x2="${R.x + R.w}" y2="${RY(p)}" stroke="#eee"/>`);
    out.push(`<text x="${R.x - 6}" y="${RY(p) + 4}" text-anchor="end">${p}%</text>`);
  }
  const groupW = R.w / Math.max(1, rates.length);
  const barW = Math.min(40, (groupW - 20) / Math.max(1, fcs.length));
  rates.forEach((rate, gi) => {
    const gx = R.x + gi * groupW + (groupW - barW * fcs.length) / 2;
    out.push(`<text x="${R.x + gi * groupW + groupW / 2}" y="${R.y + R.h + 16}" text-anchor="middle">${rate === 0 ? "no flood" : `${kpps(rate)} pps`}</text>`);
    fcs.forEach((c, ci) => {
      const st = c.flood!.find((s) => s.requestedPps === rate);
      if (!st) return;
      const x = gx + ci * barW;
      const pct = Number.isFinite(st.openedPct) ? st.openedPct : 0;
      out.push(`<rect x="${x.toFixed(1)}" y="${RY(pct).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(R.y + R.h - RY(pct)).toFixed(1)}" fill="${COLORS[c.id]}"/>`);
      out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${(RY(pct) - 4).toFixed(1)}" text-anchor="middle" font-size="10">${ms(st.p99)}</text>`);
    });
  });
  out.push(`<text x="${R.x + R.w / 2}" y="${R.y + R.h + 34}" text-anchor="middle">requested spoofed flood rate (half on knock ports)</text>`);
  fcs.forEach((c, i) => {
    // Three to a row: ids are up to 16 characters and the panel is 480 px wide.
    const x = R.x + 10 + (i % 3) * 160;
    const y = H - 58 + 18 * Math.floor(i / 3);
    out.push(`<rect x="${x}" y="${y}" width="12" height="12" fill="${COLORS[c.id]}"/>`);
    out.push(`<text x="${x + 16}" y="${y + 10}">${escXml(c.id)}</text>`);
  });
  out.push(`<text x="20" y="${H - 12}" fill="#555">Each contender in its own pair of network namespaces, one after the other in one run. Details: bench/results and docs/bench.md.</text>`);
  out.push("</svg>");
  return out.join("\n") + "\n";
}
