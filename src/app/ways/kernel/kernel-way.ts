/**
 * The kernel engine (KNOCK_ENGINE=kernel): the doors' sequences run as nftables rules
 * (core/knock/compile.ts, adapters/firewall/nftables/knock.ts), which write a completed sequence's
 * grant themselves, at kernel speed and while the daemon is down. Each completion is reported on
 * an NFLOG group, read here, and handed to the grant lifecycle like any other way in: the audit
 * line, metrics, hooks and the cluster object follow as in capture mode.
 *
 * The book and the kernel agree because the lifecycle writes the grant again: the same door-wide
 * element with the door's OPEN_FOR from the daemon's now, a refresh some milliseconds later than
 * the rule's (the report's flush timeout, 10 ms, and the write), never shorter; so the book's end
 * is the kernel's (to the write's latency) and the sweep's close line comes when the kernel lets
 * the element go. A grant the rules made while the daemon was down is in the door's set at start,
 * where adoption finds it like any other.
 */
import { errorFields } from "../../../core/errors.js";
import { Decoder } from "../../../core/packet/decode.js";
import { nflogParts } from "../../../core/packet/nflog.js";
import { knockInterfaces } from "../../../core/firewall/plan.js";
import type { Config, Door } from "../../../core/types.js";
import { openNflog, type FrameHandler, type InterfaceState, type NflogCapture } from "../../../adapters/capture.js";
import { KNOCK_NFLOG_FLUSH_HUNDREDTHS, KNOCK_NFLOG_GROUP, knockReport } from "../../../adapters/firewall/nftables/knock.js";
import type { Check } from "../../../adapters/http.js";
import type { Logger } from "../../../adapters/log.js";
import type { Metrics } from "../../../adapters/metrics/metrics.js";
import type { Grants } from "../../grants.js";
import type { PacketWay } from "../way.js";

export interface KernelDeps {
  config: Config;
  log: Logger;
  metrics: Metrics;
  /** The NFLOG reader: libpcap's, unless a test gives its own. */
  openNflog?(group: number, onFrame: FrameHandler, flushHundredths: number): NflogCapture;
  /** An interface's state (undefined: no such interface), as capture reads it. */
  interfaceState(iface: string): InterfaceState | undefined;
}

export class KernelWay implements PacketWay {
  /** Attempts in progress live in the kernel's sets. */
  readonly tracked = 0;
  private readonly doors: Map<string, Door>;
  private readonly decoder = new Decoder("RAW");
  private capture: NflogCapture | null = null;
  private problem: string | null = "not reading the kernel's reports yet";
  /** KNOCK_INTERFACE's names this host lacks, where the rules take no knock; "" when none. */
  private missing = "";

  constructor(
    private readonly deps: KernelDeps,
    private readonly grants: Pick<Grants, "open" | "closeSequence">,
  ) {
    this.doors = new Map(deps.config.doors.map((d) => [d.name, d]));
  }

  /** No captured packet is its own: the kernel reads the knocks. */
  ports(): [] {
    return [];
  }
  takes(): boolean {
    return false;
  }
  handle(): void {}

  start(): Promise<void> {
    this.open();
    this.lookForInterfaces();
    return Promise.resolve();
  }

  /** A lost NFLOG capture is opened again (reports sent meanwhile are missed; the kernel's grants are not). */
  sweep(): void {
    if (!this.capture?.alive()) this.open();
    this.lookForInterfaces();
  }

  checks(): Check[] {
    return [
      this.problem === null ? { name: "kernel", ok: true } : { name: "kernel", ok: false, detail: this.problem },
      this.missing === "" ? { name: "kernel_interfaces", ok: true } : { name: "kernel_interfaces", ok: false, detail: `KNOCK_INTERFACE names ${this.missing}, which this host does not have: knocks there open nothing` },
    ];
  }

  /**
   * The rules match KNOCK_INTERFACE's names (iifname), which nothing checks: a name this host lacks
   * (mistyped, or not there yet) takes no knock. Said as capture says it of an interface it waits for.
   */
  private lookForInterfaces(): void {
    const missing = (this.deps.config.interfaces ?? []).filter((name) => this.deps.interfaceState(name) === undefined).join(",");
    if (missing !== "" && missing !== this.missing) {
      this.deps.log.warn({ event: "kernel_interface_missing", iface: missing }, `KNOCK_INTERFACE names ${missing}, which this host does not have: the kernel's rules take no knock there until it comes`);
    }
    this.missing = missing;
  }

  private open(): void {
    const { log } = this.deps;
    this.capture?.close();
    try {
      this.capture = (this.deps.openNflog ?? openNflog)(KNOCK_NFLOG_GROUP, (frame, length) => this.report(frame, length), KNOCK_NFLOG_FLUSH_HUNDREDTHS);
      this.problem = null;
      const { flushMs } = this.capture;
      const askedMs = KNOCK_NFLOG_FLUSH_HUNDREDTHS * 10;
      // Unlike capture, which follows the default routes' interfaces, the rules take knocks from every one unless told.
      const on = knockInterfaces(this.deps.config.interfaces)?.join(",") ?? "any";
      log.info(
        { event: "kernel_engine", nflog_group: KNOCK_NFLOG_GROUP, flush_ms: flushMs, interfaces: on },
        `the kernel recognises knocks on ${on === "any" ? "every interface but loopback (KNOCK_INTERFACE restricts them)" : on}; reading its reports on NFLOG group ${KNOCK_NFLOG_GROUP}`,
      );
      if (flushMs !== askedMs) {
        const held = flushMs === null ? "cannot be read back" : `is ${flushMs} ms`;
        log.warn({ event: "kernel_reports_slow", nflog_group: KNOCK_NFLOG_GROUP, flush_ms: flushMs }, `the NFLOG group's flush timeout ${held}, not ${askedMs} ms: audit lines, hooks and cluster objects may follow a kernel grant by up to that (1 s by the kernel's default)`);
      }
    } catch (err) {
      this.capture = null;
      const fields = errorFields(err, "KNOCK_E_CAPTURE");
      if (this.problem !== fields.err) log.error({ event: "kernel_reports_failed", ...fields }, `cannot read the kernel's reports: ${fields.err}; grants still open, without audit lines`);
      this.problem = fields.err;
    }
  }

  /** One completion; runs in the capture callback, so nothing escapes. */
  private report(frame: Buffer, length: number): void {
    try {
      const parts = nflogParts(frame, length);
      const report = parts && knockReport(parts.prefix);
      const door = report && this.doors.get(report.door);
      if (!parts || !report || !door) return;
      if (this.decoder.decode(frame.subarray(parts.payloadAt, parts.payloadEnd), parts.payloadEnd - parts.payloadAt) !== "knock") return;
      const { src, family } = this.decoder.knock;
      this.deps.metrics.knock(door.name, "completed");
      // No capture time: the rule granted as the last knock passed. What is left to time here is this
      // daemon's own write after the report, which is no knock-to-open (docs/kernel-engine.md).
      if (report.kind === "open") void this.grants.open({ door, family, src, via: "sequence", openForMs: door.openForMs });
      else void this.grants.closeSequence(door, family, src);
    } catch (err) {
      this.deps.log.error({ event: "kernel_report_failed", ...errorFields(err) }, `a kernel report could not be read: ${String(err)}`);
    }
  }
}
