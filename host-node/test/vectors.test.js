// Every golden vector in tests/vectors/ through the component in Node. The Python host checks
// the same files (tests/test_vectors.py) and the Rust core natively (core-wasm/tests/vectors.rs):
// all three answer as the files say, so the hosts answer alike. tests/test_cross_host.py also
// compares the two hosts' answers to each other directly, byte for byte.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { CoreError, compareClocks, loadCore, mergeClocks } from "../src/index.js";

const VECTORS = new URL("../../tests/vectors/", import.meta.url);
const load = (name) => JSON.parse(readFileSync(new URL(name, VECTORS), "utf8"));

/** What each vector file is checked by here; a new file must be added (see the first test). */
const CHECKED = ["incoming.json", "outgoing.json", "clock.json", "detector.json"];

test("every vector file in tests/vectors/ is checked by the Node host", () => {
  const files = readdirSync(VECTORS).filter((f) => f.endsWith(".json")).sort();
  assert.deepEqual(files, [...CHECKED].sort());
});

const core = await loadCore();

describe("incoming.json: parseIncoming", () => {
  for (const c of load("incoming.json").cases) {
    test(c.name, () => {
      const got = core.parseIncoming(c.headers);
      for (const key of ["parent", "tracestate", "upstream"]) assert.deepEqual(got[key], c.expect[key], key);
      if ("expect_errors" in c) assert.equal(got.errors.length, c.expect_errors, JSON.stringify(got.errors));
    });
  }
});

describe("outgoing.json: encodeOutgoing", () => {
  const vectors = load("outgoing.json");
  for (const c of vectors.cases) {
    test(c.name, () => {
      const got = core.encodeOutgoing(c.request);
      // The exact strings, and no other header.
      assert.deepEqual(Object.keys(got).sort(), Object.keys(c.expect).sort());
      for (const [name, value] of Object.entries(c.expect)) assert.equal(got[name], value, name);
    });
  }
  for (const c of vectors.errors) {
    test(`refuses: ${c.name}`, () => {
      assert.throws(() => core.encodeOutgoing(c.request), CoreError);
      assert.equal(core.failure, null, "a refusal leaves the instance usable");
    });
  }
});

describe("clock.json: the JS twin of the core's clock rules", () => {
  for (const [i, c] of load("clock.json").cases.entries()) {
    test(`case ${i}: compare ${c.compare}`, () => {
      assert.deepEqual(mergeClocks(c.a, c.b), c.merge);
      assert.equal(compareClocks(c.a, c.b), c.compare);
    });
  }
});

describe("detector.json: observe and races", () => {
  const process_ = { service_name: "svc", environment: "", instance_id: "", process_id: 0, tags: {} };
  for (const c of load("detector.json").cases) {
    test(c.name, async () => {
      // One detector per case, as the Python test's `Detector()`.
      const detector = await loadCore();
      detector.resetDetector({});
      detector.configure(process_);
      for (const batch of c.batches) {
        const summary = detector.observe(batch, 0);
        assert.equal(summary.dropped, 0, JSON.stringify(summary.errors));
        assert.deepEqual(summary.bodies, []);
      }
      const got = detector.races().races.map((r) => ({
        kind: r.kind,
        severity: r.severity,
        variable: r.variable,
        count: r.count,
        locations: r.accesses.map((a) => a.location),
      }));
      assert.deepEqual(got, c.expect, c.description);
    });
  }
});
