/** Reads the iptables commands of knockd.conf that grant or revoke ports for the knocker. */
import { parsePort } from "../../config/values.js";
import type { PortSpec } from "../../core/types.js";

export interface IptablesRule {
  /** -A/-I make a grant, -D revokes it. */
  op: "grant" | "revoke";
  ports: PortSpec[];
}

const IPTABLES = /^ip6?tables(?:-legacy|-nft)?$/;
const KNOCKER = new Set(["%IP%", "%IP%/32", "%IP%/128"]);

/** Whether argv runs iptables or ip6tables (by any path, legacy or nft). */
export const isIptables = (argv: readonly string[]): boolean => IPTABLES.test(argv[0]?.split("/").pop() ?? "");

/**
 * Reads argv as the usual knockd grant `iptables -A|-I INPUT [n] -s %IP% -p tcp|udp --dport N
 * -j ACCEPT` (or its -D revoke). Returns the rule, or why it is not one: only such a rule means
 * exactly "let the knocker reach these ports", which is what knockgate's _PORTS does.
 */
export function parseIptablesRule(argv: readonly string[]): IptablesRule | string {
  if (!isIptables(argv)) return `${argv[0] ?? "(empty)"} is not iptables`;
  let op: IptablesRule["op"] | undefined;
  let chain: string | undefined;
  let source: string | undefined;
  let proto: string | undefined;
  let target: string | undefined;
  let ports: string[] | undefined;
  const matches: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = (): string => argv[++i] ?? "";
    switch (a) {
      case "-w":
      case "--wait":
        if (/^\d+$/.test(argv[i + 1] ?? "")) i++;
        break;
      case "-W":
      case "--wait-interval":
        value();
        break;
      case "-t":
      case "--table": {
        const table = value();
        if (table !== "filter") return `it changes the ${table} table, not a filter rule`;
        break;
      }
      case "-A":
      case "--append":
      case "-I":
      case "--insert":
      case "-D":
      case "--delete":
        if (op !== undefined) return "it has two commands";
        op = a === "-D" || a === "--delete" ? "revoke" : "grant";
        chain = value();
        // -I takes an optional rule number; -D with a number deletes by position, not by match.
        if ((a === "-I" || a === "--insert") && /^\d+$/.test(argv[i + 1] ?? "")) i++;
        break;
      case "-s":
      case "--source":
      case "--src":
        source = value();
        break;
      case "-p":
      case "--protocol":
        proto = value().toLowerCase();
        break;
      case "-m":
      case "--match":
        matches.push(value().toLowerCase());
        break;
      case "--dport":
      case "--destination-port":
        ports = [value()];
        break;
      case "--dports":
      case "--destination-ports":
        if (!matches.includes("multiport")) return `${a} needs -m multiport`;
        ports = value().split(",");
        break;
      case "-j":
      case "--jump":
        target = value();
        break;
      default:
        return `"${a}" has no knockgate equivalent`;
    }
  }
  if (op === undefined) return "it neither adds (-A/-I) nor deletes (-D) a rule";
  if (chain !== "INPUT") return `it works on chain ${chain ?? "(none)"}, not INPUT`;
  if (source === undefined || !KNOCKER.has(source)) return "it is not limited to the knocker's address (-s %IP%)";
  if (target !== "ACCEPT") return `its target is ${target ?? "(none)"}, not ACCEPT`;
  if (ports === undefined) return "it opens every port (no --dport)";
  if (proto === undefined) return "--dport without -p tcp|udp: iptables rejects this rule, so knockd never opened the port";
  if (proto !== "tcp" && proto !== "udp") return `protocol ${proto} is not tcp or udp`;
  const unknownMatch = matches.find((m) => m !== proto && m !== "multiport");
  if (unknownMatch !== undefined) return `match -m ${unknownMatch} has no knockgate equivalent`;
  const specs: PortSpec[] = [];
  for (const p of ports) {
    // iptables writes a range as FIRST:LAST; knockgate's PORTS holds single ports only.
    if (p.includes(":")) return `--dport ${p} is a port range; only single ports convert`;
    try {
      specs.push({ port: parsePort(p), proto });
    } catch (err) {
      return (err as Error).message;
    }
  }
  return { op, ports: specs };
}
