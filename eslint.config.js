import js from "@eslint/js";
import tseslint from "typescript-eslint";
import importCycle from "./lint/import-cycle.js";

/** What src/core may not reach: the core is pure, so every effect comes in as an argument. */
const CORE_MESSAGE = "src/core is pure: pass effects (clock, randomness, I/O) in from src/app or src/adapters";

export const corePurity = {
  files: ["src/core/**/*.ts"],
  rules: {
    "no-restricted-imports": [
      "error",
      {
        paths: [
          {
            name: "node:crypto",
            // Hashing and ciphers are computations; randomness and keys made here are not (the SPA
            // encoder enciphers with a salt its caller draws).
            allowImportNames: ["hash", "createHash", "createHmac", "createCipheriv", "createDecipheriv", "timingSafeEqual", "KeyObject"],
            message: `${CORE_MESSAGE} (node:crypto: only hashes, HMACs, ciphers, deciphers, timingSafeEqual and the KeyObject type)`,
          },
        ],
        patterns: [
          { regex: "^(?!\\.|node:crypto$)", message: `${CORE_MESSAGE} (no packages or node: modules)` },
          { regex: "(^|/)(adapters|app|cli|config)(/|$)", message: `${CORE_MESSAGE} (the arrow points into core, not out of it)` },
        ],
      },
    ],
    "no-restricted-globals": [
      "error",
      ...["process", "setTimeout", "setInterval", "setImmediate", "clearTimeout", "clearInterval", "clearImmediate", "queueMicrotask", "performance", "fetch", "require", "crypto"].map(
        (name) => ({ name, message: CORE_MESSAGE }),
      ),
    ],
    "no-restricted-properties": [
      "error",
      { object: "Date", property: "now", message: CORE_MESSAGE },
      { object: "Math", property: "random", message: CORE_MESSAGE },
    ],
    "no-restricted-syntax": [
      "error",
      { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: `${CORE_MESSAGE} (new Date() reads the clock)` },
      { selector: "CallExpression[callee.name='Date']", message: `${CORE_MESSAGE} (Date() reads the clock)` },
      { selector: "ImportExpression", message: `${CORE_MESSAGE} (no dynamic import)` },
    ],
  },
};

/**
 * The other layers: imports point down, cli -> app -> adapters -> config -> core (core: corePurity
 * above). Held on relative specifiers, as src writes them; dynamic imports like static ones.
 */
const LAYER_MESSAGE = "imports point down the layers: cli -> app -> adapters -> config -> core";

/** What `files` may not import: each { regex, message } held on static and dynamic imports alike. */
function forbid(files, forbidden) {
  return {
    files,
    rules: {
      "no-restricted-imports": ["error", { patterns: forbidden }],
      "no-restricted-syntax": ["error", ...forbidden.map(({ regex, message }) => ({ selector: `ImportExpression[source.value=/${regex.replaceAll("/", "\\/")}/]`, message }))],
    },
  };
}

function above(name, layers) {
  return { regex: `^(\\.\\./)+(${layers.join("|")})(/|$)`, message: `src/${name} may not import src/${layers.join(" or src/")}: ${LAYER_MESSAGE}` };
}

const ADAPTERS_ABOVE = above("adapters", ["app", "cli"]);

export const layers = [forbid(["src/config/**/*.ts"], [above("config", ["adapters", "app", "cli"])]), forbid(["src/adapters/**/*.ts"], [ADAPTERS_ABOVE]), forbid(["src/app/**/*.ts"], [above("app", ["cli"])])];

/**
 * The firewall backends stand apart: adapters/firewall/iptables and adapters/firewall/nftables each
 * hold their own rules, scripts and listing parsers, and neither imports the other; what both need
 * lives in adapters/firewall itself. (A later entry for the same files replaces the rule's
 * options, so each repeats the adapters' layer rule.)
 */
const BACKENDS = ["iptables", "nftables"];
export const backendsApart = BACKENDS.map((name) => {
  const others = BACKENDS.filter((b) => b !== name);
  const apart = { regex: `^(\\.\\./)+(firewall/)?(${others.join("|")})(/|\\.js$|$)`, message: `src/adapters/firewall/${name} may not import src/adapters/firewall/${others.join(" or ")}: each backend stands alone; what both need goes in src/adapters/firewall` };
  return forbid([`src/adapters/firewall/${name}/**/*.ts`], [ADAPTERS_ABOVE, apart]);
});

/** No file of src imports anything that leads back to it (lint/import-cycle.js). */
export const noCycles = {
  files: ["src/**/*.ts"],
  plugins: { knockgate: importCycle },
  rules: { "knockgate/import-cycle": "error" },
};

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "bench/results/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "error",
    },
  },
  corePurity,
  ...layers,
  ...backendsApart,
  noCycles,
  {
    files: ["**/*.js", "**/*.mjs", "**/*.cjs"],
    languageOptions: { globals: { process: "readonly", console: "readonly", require: "readonly", module: "writable", Buffer: "readonly", setTimeout: "readonly" } },
  },
);
