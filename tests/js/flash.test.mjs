import { test } from "node:test";
import assert from "node:assert/strict";

import { FLASHES, flashCell } from "../../static/ticker/js/render.js";

/** A cell with a class list, and the animation's end as main.js handles it (the class taken off). */
function fakeCell() {
  const classes = new Set();
  return {
    classList: {
      contains: (name) => classes.has(name),
      add: (name) => classes.add(name),
      remove: (...names) => names.forEach((name) => classes.delete(name)),
    },
    classes,
    animationEnd() {
      this.classList.remove(...FLASHES);
    },
  };
}

test("a tick highlights the price cell in its direction", () => {
  const cell = fakeCell();
  flashCell(cell, "down");
  assert.deepEqual([...cell.classes], ["flash-down"]);
});

test("a running highlight is never restarted, so four ticks a second flash at most twice (WCAG 2.3.1)", () => {
  // Ticks every 250 ms for 2 s; each highlight runs 400 ms (the CSS), then main.js takes its class off.
  const cell = fakeCell();
  let flashes = 0;
  let endsAt = null;
  for (let ms = 0; ms < 2000; ms += 250) {
    if (endsAt !== null && ms >= endsAt) {
      cell.animationEnd();
      endsAt = null;
    }
    const before = cell.classes.size;
    flashCell(cell, ms % 500 ? "up" : "down");
    if (before === 0 && cell.classes.size === 1) {
      flashes += 1;
      endsAt = ms + 400;
    }
  }
  assert.equal(flashes, 4); // 2 s at 4 ticks a second: 8 ticks, every other one flashes
});
