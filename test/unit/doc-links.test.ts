/**
 * Relative links in README.md, CHANGELOG.md, the chart's README and docs/*.md point at files that exist and, with a
 * #fragment, at a heading those files have (GitHub's anchors), so moving a section breaks a test,
 * not a reader's click.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));

/** Markdown outside fenced code blocks and inline code, where a link is a link. */
const prose = (text: string) => text.replace(/^```[\s\S]*?^```/gm, "").replace(/`[^`\n]*`/g, "code");

/** GitHub's heading anchors: lowercased, punctuation but `-` and `_` dropped, spaces to `-`, repeats numbered. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of text.replace(/^```[\s\S]*?^```/gm, "").split("\n")) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = (m[1] as string)
      .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Every relative link target of a markdown text: [text](target) and <a href>, without titles. */
function links(text: string): string[] {
  const found = [...prose(text).matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1] as string);
  return found.filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t));
}

function documents(): string[] {
  const docs = readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => join(ROOT, "docs", f));
  return [join(ROOT, "README.md"), join(ROOT, "CHANGELOG.md"), join(ROOT, "helm/knockgate/README.md"), ...docs];
}

test("every relative link in the READMEs, the changelog and docs/ reaches a file and a heading that exist", () => {
  const broken: string[] = [];
  for (const file of documents()) {
    const text = readFileSync(file, "utf8");
    for (const target of links(text)) {
      const [path = "", fragment] = target.split("#");
      const dest = path === "" ? file : join(dirname(file), decodeURIComponent(path));
      const where = `${relative(ROOT, file)}: ${target}`;
      if (!existsSync(dest)) {
        broken.push(`${where} (no such file)`);
        continue;
      }
      if (fragment === undefined || !dest.endsWith(".md") || statSync(dest).isDirectory()) continue;
      if (!anchors(readFileSync(dest, "utf8")).has(fragment)) broken.push(`${where} (no such heading)`);
    }
  }
  assert.deepEqual(broken, []);
});

test("anchors and links are read as GitHub reads them", () => {
  const text = "# Metrics (`/metrics`, Prometheus text format)\n## `KNOCK_INTERFACE=any`\n## Logs\n## Logs\n```\n# not a heading\n```\n";
  assert.deepEqual([...anchors(text)], ["metrics-metrics-prometheus-text-format", "knock_interfaceany", "logs", "logs-1"]);
  assert.deepEqual(links("[a](docs/x.md#y) [b](https://example.com) `[c](no.md)` [d](#z)"), ["docs/x.md#y", "#z"]);
});
