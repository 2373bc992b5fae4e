// Vector clocks on the host side: a JS twin of the core's `VectorClock` (core-wasm/src/clock.rs),
// pinned to the same rules by tests/vectors/clock.json. A host merges clocks at every join and
// must not pay a component call for it; the core exports no clock function (the detector and
// the codecs use the Rust ones on what the host sends).
//
// A clock is `[[component, counter], ...]`, entries in first-seen order (so an encoded clock is
// deterministic); comparisons ignore the order and count an absent component as 0.

/** Element-wise maximum, keeping first-seen order: `a`'s entries, then `b`'s new ones. */
export function mergeClocks(a, b) {
  const merged = new Map();
  for (const [component, counter] of a) observe(merged, component, counter);
  for (const [component, counter] of b) observe(merged, component, counter);
  return Array.from(merged, ([component, counter]) => [component, counter]);
}

function observe(map, component, counter) {
  const known = map.get(component);
  if (known === undefined || counter > known) map.set(component, counter);
}

/**
 * How `a` relates to `b`: "Before" (a happened before b), "After", "Equal" or "Concurrent".
 */
export function compareClocks(a, b) {
  const left = toMap(a);
  const right = toMap(b);
  let less = false;
  let greater = false;
  for (const component of new Set([...left.keys(), ...right.keys()])) {
    const x = left.get(component) ?? 0;
    const y = right.get(component) ?? 0;
    if (x < y) less = true;
    else if (x > y) greater = true;
  }
  if (less && greater) return "Concurrent";
  if (less) return "Before";
  if (greater) return "After";
  return "Equal";
}

/** Whether `a` happened strictly before `b`. */
export function happensBefore(a, b) {
  return compareClocks(a, b) === "Before";
}

function toMap(clock) {
  const map = new Map();
  for (const [component, counter] of clock) observe(map, component, counter);
  return map;
}
