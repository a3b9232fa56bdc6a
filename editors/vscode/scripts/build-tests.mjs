// Compiles test/*.test.ts (with the src/ they import) to out/test/*.test.js for mocha.
import { readdirSync } from "node:fs";
import * as esbuild from "esbuild";

const tests = readdirSync("test").filter((f) => f.endsWith(".test.ts")).map((f) => `test/${f}`);
await esbuild.build({
  entryPoints: tests,
  outdir: "out/test",
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node18",
  sourcemap: "inline",
  external: ["vscode"],
  logLevel: "warning",
});
