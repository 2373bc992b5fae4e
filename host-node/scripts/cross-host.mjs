// The Node host as a subprocess, for tests/test_cross_host.py: it reads calls from stdin, one
// JSON line each, `{"call": "<wit function>", "args": [...]}` (or `{"new": true}` for a fresh
// instance), makes them on one core instance in order, and writes each answer framed as
// `{"ok": true, "bytes": N}\n` + the answer's N bytes of UTF-8 + `\n`, or
// `{"ok": false, "error": "..."}\n` when the core refused. The answers are the component's text,
// unparsed, so the test can compare them byte for byte with the Python host's.

import { text } from "node:stream/consumers";
import { CoreError, loadCore } from "../src/index.js";

const input = await text(process.stdin);
let core = await loadCore();
const out = [];
for (const line of input.split("\n")) {
  if (line.trim() === "") continue;
  const request = JSON.parse(line);
  if (request.new) {
    core = await loadCore();
    continue;
  }
  try {
    const answer = Buffer.from(core.call(request.call, ...request.args), "utf8");
    out.push(Buffer.from(JSON.stringify({ ok: true, bytes: answer.length }) + "\n"), answer, Buffer.from("\n"));
  } catch (e) {
    if (!(e instanceof CoreError) || core.failure !== null) throw e;
    out.push(Buffer.from(JSON.stringify({ ok: false, error: e.message }) + "\n"));
  }
}
process.stdout.write(Buffer.concat(out));
