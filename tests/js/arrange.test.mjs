import { test } from "node:test";
import assert from "node:assert/strict";

import { arrange } from "../../static/ticker/js/render.js";

/**
 * A parent node that records every move. `insertBefore` takes a node out and puts it back, which in a
 * browser drops the keyboard focus inside it; `moveBefore` (when `withMoveBefore`) keeps it, but Chromium
 * then scrolls the page to the focused element.
 */
function fakeParent(names, { withMoveBefore = false } = {}) {
  const parent = { children: [], inserted: [], moved: [] };
  const node = (name) => ({
    name,
    parentNode: null,
    get nextSibling() {
      const siblings = this.parentNode?.children ?? [];
      const i = siblings.indexOf(this);
      return i >= 0 ? (siblings[i + 1] ?? null) : null;
    },
  });
  const place = (child, ref) => {
    if (child.parentNode === parent) parent.children.splice(parent.children.indexOf(child), 1);
    const at = ref === null ? parent.children.length : parent.children.indexOf(ref);
    assert.ok(at >= 0, "the reference node is a child");
    parent.children.splice(at, 0, child);
    child.parentNode = parent;
  };
  parent.insertBefore = (child, ref) => {
    parent.inserted.push(child.name);
    place(child, ref);
  };
  if (withMoveBefore) {
    parent.moveBefore = (child, ref) => {
      assert.equal(child.parentNode, parent, "moveBefore moves only a node already in place");
      parent.moved.push(child.name);
      place(child, ref);
    };
  }
  const nodes = new Map(names.map((name) => [name, node(name)]));
  for (const n of nodes.values()) place(n, null);
  parent.inserted = [];
  return { parent, nodes, order: () => parent.children.map((n) => n.name), pick: (s) => [...s].map((c) => nodes.get(c)) };
}

for (const withMoveBefore of [false, true]) {
  const how = withMoveBefore ? "with moveBefore" : "with insertBefore only";

  test(`an order that already holds moves nothing (${how})`, () => {
    const { parent, pick } = fakeParent(["A", "B", "C"], { withMoveBefore });
    assert.equal(arrange(parent, pick("ABC")), false);
    assert.deepEqual([...parent.inserted, ...parent.moved], []);
  });

  test(`rows are put in the new order (${how})`, () => {
    const { parent, pick, order } = fakeParent(["A", "B", "C", "D", "E"], { withMoveBefore });
    assert.equal(arrange(parent, pick("EBDAC")), true);
    assert.deepEqual(order(), ["E", "B", "D", "A", "C"]);
  });

  test(`the row holding the focus keeps it while the others move around it (${how})`, () => {
    const { parent, pick, order, nodes } = fakeParent(["A", "B", "C", "D", "E"], { withMoveBefore });
    arrange(parent, pick("DCEBA"), nodes.get("C"));
    assert.deepEqual(order(), ["D", "C", "E", "B", "A"]);
    // Neither taken out and put back (focus lost) nor moved (the browser scrolls to follow it).
    assert.ok(![...parent.inserted, ...parent.moved].includes("C"), `C moved: ${parent.inserted} ${parent.moved}`);
  });
}

test("a new row (not in the table yet) is inserted in its place", () => {
  const { parent, pick, order } = fakeParent(["A", "C"], { withMoveBefore: true });
  const b = { name: "B", parentNode: null, nextSibling: null };
  arrange(parent, [...pick("C"), b, ...pick("A")]);
  assert.deepEqual(order(), ["C", "B", "A"]);
  assert.deepEqual(parent.inserted, ["B"]);
});
