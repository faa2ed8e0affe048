/**
 * ESLint rule `knockgate/import-cycle`: a file may not import anything that leads back to it.
 *
 * eslint-plugin-import's no-cycle does this too, at the cost of a dependency and its resolver; ours
 * needs only relative ESM specifiers ("./x.js" is x.ts), which is all src uses. The file being linted
 * is read from its syntax tree (so the rule also judges text not yet saved); every other file from
 * disk with the TypeScript scanner, cached by modification time. Type-only imports count: they tie
 * the files together just the same, and an `import type` up the layers is still an import up.
 */
import { readFileSync, statSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import ts from "typescript";

/** path -> { mtimeMs, targets }: the relative imports of a file on disk. */
const onDisk = new Map();

/** The file a relative specifier names, or null for packages and node: modules. */
function target(from, specifier) {
  if (!specifier.startsWith("./") && !specifier.startsWith("../")) return null;
  return resolve(dirname(from), specifier.replace(/\.js$/, ".ts"));
}

function diskImports(file) {
  let mtimeMs;
  try {
    mtimeMs = statSync(file).mtimeMs;
  } catch {
    return [];
  }
  const cached = onDisk.get(file);
  if (cached?.mtimeMs === mtimeMs) return cached.targets;
  const { importedFiles } = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
  const targets = importedFiles.flatMap((f) => target(file, f.fileName) ?? []);
  onDisk.set(file, { mtimeMs, targets });
  return targets;
}

/** The shortest chain of imports from `start` back to `file` (`file` itself imports as `own`), or null. */
function pathBack(file, own, start) {
  const cameFrom = new Map([[start, null]]);
  const queue = [start];
  for (let at = queue.shift(); at !== undefined; at = queue.shift()) {
    if (at === file) {
      const chain = [];
      for (let step = at; step !== null; step = cameFrom.get(step)) chain.unshift(step);
      return chain;
    }
    for (const next of at === file ? own : diskImports(at)) {
      if (!cameFrom.has(next)) {
        cameFrom.set(next, at);
        queue.push(next);
      }
    }
  }
  return null;
}

export const importCycle = {
  meta: {
    type: "problem",
    docs: { description: "Forbid imports that lead back to the importing file" },
    schema: [],
    messages: { cycle: "import cycle: {{chain}} (move what both need into a file of its own, lower down)" },
  },
  create(context) {
    const file = context.physicalFilename;
    const imports = [];
    const note = (node, source) => {
      if (typeof source === "string") {
        const to = target(file, source);
        if (to !== null) imports.push({ node, to });
      }
    };
    const fromSource = (node) => note(node, node.source?.value);
    return {
      ImportDeclaration: fromSource,
      ExportNamedDeclaration: fromSource,
      ExportAllDeclaration: fromSource,
      ImportExpression: fromSource,
      TSImportType: (node) => note(node, node.argument?.literal?.value),
      "Program:exit"() {
        const own = imports.map((i) => i.to);
        for (const { node, to } of imports) {
          const chain = pathBack(file, own, to);
          if (chain === null) continue;
          const cwd = context.cwd;
          context.report({ node, messageId: "cycle", data: { chain: [file, ...chain].map((f) => relative(cwd, f)).join(" -> ") } });
        }
      },
    };
  },
};

export default { rules: { "import-cycle": importCycle } };
