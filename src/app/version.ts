import { createRequire } from "node:module";

const pkg = createRequire(import.meta.url)("../../../package.json") as { version: string };
export const VERSION: string = pkg.version;
/**
 * The commit this build came from. The image sets KNOCKGATE_REVISION from its REVISION build
 * argument (it holds no .git); elsewhere it is "unknown": running git at runtime would report
 * whatever checkout happens to be around, not what was built.
 */
export const REVISION: string = process.env["KNOCKGATE_REVISION"] || "unknown";
