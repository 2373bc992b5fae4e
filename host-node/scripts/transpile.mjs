// Transpiles the component (the very file the Python host loads) into generated/ with jco:
// core wasm modules plus the JS glue that lowers and lifts the component's strings. Run by
// `npm run transpile` (and `make node`); the output is never committed, it is made from the wasm.
//
// It refuses a component that imports anything outside src/sandbox.js's allowlist: a new WASI
// import (a filesystem, sockets, clocks) must be a decision made in the sandbox, not a surprise.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { transpile } from "@bytecodealliance/jco";
import { ALLOWED_IMPORTS } from "../src/sandbox.js";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const source = resolve(process.argv[2] ?? join(root, "..", "host-python", "raceway", "_wasm", "raceway_core.wasm"));
const outDir = join(root, "generated");

const wasm = readFileSync(source);
const { files, imports, exports } = await transpile(wasm, {
  name: "raceway_core",
  instantiation: "sync", // imports are ours (src/sandbox.js); sync lets us compile once, instantiate many
  quiet: true,
  noComponentErrorWrapping: true, // a refusal is thrown as its message (a string), a trap as an Error
  wasiShim: false, // nothing is mapped to @bytecodealliance/preview2-shim's default (ambient) WASI
});

const unversioned = (name) => name.replace(/@[^/]*$/, "");
const unexpected = imports.filter((name) => !ALLOWED_IMPORTS.includes(unversioned(name)));
if (unexpected.length > 0) {
  console.error(`transpile: the component imports ${unexpected.join(", ")}, which src/sandbox.js does not provide`);
  process.exit(1);
}

rmSync(outDir, { recursive: true, force: true });
for (const [name, bytes] of Object.entries(files)) {
  if (name.endsWith(".d.ts")) continue; // jco's own types of the raw exports; src/index.d.ts types the API
  const path = join(outDir, name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, bytes);
}
const manifest = {
  source: relative(join(root, ".."), source),
  sha256: createHash("sha256").update(wasm).digest("hex"),
  bytes: wasm.length,
  imports,
  exports: exports.map(([name]) => name),
  modules: Object.keys(files).filter((name) => name.endsWith(".wasm")), // what instantiate() asks for
};
writeFileSync(join(outDir, "manifest.json"), JSON.stringify(manifest, null, 1) + "\n");
console.log(`transpiled ${source} (${wasm.length} bytes, sha256 ${manifest.sha256.slice(0, 12)}) into generated/`);
