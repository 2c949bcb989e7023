import assert from "node:assert/strict";
import { test } from "node:test";

import { CONFIG_ID, readConfig } from "../../static/ticker/js/config.js";

/** A document holding only the json_script blocks given, by id, as the server renders them. */
function page(blocks) {
  return {
    getElementById: (id) => (id in blocks ? { textContent: JSON.stringify(blocks[id]) } : null),
  };
}

test("readConfig takes the silence timeout, history length and upgrade interval from the page's ticker-config block", () => {
  const settings = { silence_s: 7.5, history_steps: 1200, upgrade_probe_s: 3, compress_min_bytes: 256 };
  const config = readConfig(page({ [CONFIG_ID]: settings }));
  assert.deepEqual(config, { silenceMs: 7500, historySteps: 1200, upgradeMs: 3000, compressMinBytes: 256 });
});

test("readConfig says which block is missing and where it comes from", () => {
  assert.throws(() => readConfig(page({})), /no #ticker-config block on this page: extend templates\/base\.html/);
});

test("readConfig refuses a block without a positive value for each setting", () => {
  assert.throws(() => readConfig(page({ [CONFIG_ID]: { history_steps: 1200, upgrade_probe_s: 30 } })), /no positive silence_s/);
  assert.throws(
    () => readConfig(page({ [CONFIG_ID]: { silence_s: 12, history_steps: 0, upgrade_probe_s: 30 } })),
    /no positive history_steps/,
  );
  assert.throws(() => readConfig(page({ [CONFIG_ID]: { silence_s: 12, history_steps: 1200 } })), /no positive upgrade_probe_s/);
});
