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
            allowImportNames: ["createHash", "createHmac", "createCipheriv", "createDecipheriv", "timingSafeEqual"],
            message: `${CORE_MESSAGE} (node:crypto: only hashes, HMACs, ciphers, deciphers and timingSafeEqual)`,
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

function layer(name, above) {
  const regex = `^(\\.\\./)+(${above.join("|")})(/|$)`;
  const message = `src/${name} may not import src/${above.join(" or src/")}: ${LAYER_MESSAGE}`;
  return {
    files: [`src/${name}/**/*.ts`],
    rules: {
      "no-restricted-imports": ["error", { patterns: [{ regex, message }] }],
      "no-restricted-syntax": ["error", { selector: `ImportExpression[source.value=/${regex.replaceAll("/", "\\/")}/]`, message }],
    },
  };
}

export const layers = [layer("config", ["adapters", "app", "cli"]), layer("adapters", ["app", "cli"]), layer("app", ["cli"])];

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
  noCycles,
  {
    files: ["**/*.js", "**/*.mjs", "**/*.cjs"],
    languageOptions: { globals: { process: "readonly", console: "readonly", require: "readonly", module: "writable", Buffer: "readonly", setTimeout: "readonly" } },
  },
);
