// The values the browser must share with the server (config/settings.py). The
// page renders them as a json_script block (ticker.context_processors.site,
// templates/base.html); each page script reads them once, here.

export const CONFIG_ID = "ticker-config";

/**
 * The page's settings: silenceMs (TICKER_CLIENT_SILENCE_S: how long a push
 * connection may stay silent) and historySteps (MARKET_HISTORY_STEPS: how many
 * steps of history the server keeps, so how many points a chart can hold) and
 * upgradeMs (TICKER_UPGRADE_PROBE_S: how long a page that fell back from
 * WebSocket waits before it tries the better transports again) and compressMinBytes
 * (TICKER_WS_COMPRESS_MIN_BYTES: frames under this size go uncompressed; the Lab).
 */
export function readConfig(doc = document) {
  const block = doc.getElementById(CONFIG_ID);
  if (!block) {
    throw new Error(`ticker: no #${CONFIG_ID} block on this page: extend templates/base.html, which renders it`);
  }
  const config = JSON.parse(block.textContent);
  for (const name of ["silence_s", "history_steps", "upgrade_probe_s"]) {
    if (!(config[name] > 0)) throw new Error(`ticker: #${CONFIG_ID} has no positive ${name}: see ticker.context_processors.site`);
  }
  return {
    silenceMs: config.silence_s * 1000,
    historySteps: config.history_steps,
    upgradeMs: config.upgrade_probe_s * 1000,
    compressMinBytes: config.compress_min_bytes ?? 0,
  };
}
