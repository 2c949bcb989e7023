// The chart: one-minute candles and volume of one symbol, on TradingView's lightweight-charts
// (npm, pinned in package.json; served from node_modules as static files, no build step).
import {
  CandlestickSeries,
  ColorType,
  CrosshairMode,
  HistogramSeries,
  createChart,
} from "../../lightweight-charts/lightweight-charts.standalone.production.mjs";
import { CandleSeries } from "./candles.js";

const UP = "#1e8449";
const DOWN = "#c0392b";
const clock = (time) => new Date(time * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

/**
 * The chart panel's chart. The container's data attributes say what it shows
 * (data-symbol, data-candles, data-last-time, data-last-close, data-updates):
 * for people reading the page's source, and for the browser tests.
 */
export class CandleChart {
  constructor(container) {
    this.container = container;
    this.chart = createChart(container, {
      autoSize: true,
      // The library's attribution (its licence's NOTICE asks for a link to TradingView): kept on.
      layout: { attributionLogo: true, background: { type: ColorType.Solid, color: "#fff" }, textColor: "#333" },
      grid: { vertLines: { color: "#eee" }, horzLines: { color: "#eee" } },
      crosshair: { mode: CrosshairMode.Normal },
      // No momentum after a swipe for those who asked their system for less motion.
      kineticScroll: { touch: !window.matchMedia("(prefers-reduced-motion: reduce)").matches, mouse: false },
      timeScale: { timeVisible: true, secondsVisible: false, tickMarkFormatter: clock },
      localization: { timeFormatter: clock },
      rightPriceScale: { scaleMargins: { top: 0.08, bottom: 0.28 } },
    });
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: UP,
      downColor: DOWN,
      wickUpColor: UP,
      wickDownColor: DOWN,
      borderVisible: false,
      lastValueVisible: true,
      priceLineVisible: true,
    });
    this.volume = this.chart.addSeries(HistogramSeries, {
      priceFormat: { type: "volume" },
      priceScaleId: "volume",
      lastValueVisible: false,
      priceLineVisible: false,
    });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.78, bottom: 0 } });
    this.series = null;
    this.updates = 0;
  }

  /** A new symbol: empty until load(). */
  show(symbol) {
    this.series = null;
    this.updates = 0;
    this.candles.setData([]);
    this.volume.setData([]);
    Object.assign(this.container.dataset, { symbol, candles: "0", updates: "0", lastTime: "", lastClose: "" });
  }

  /** The candles from /api/quotes/<symbol>/candles/, continued from `latest` (the newest quote known) on. */
  load(candles, latest) {
    this.series = new CandleSeries(candles, latest);
    this.candles.setData(this.series.candles.map(({ time, open, high, low, close }) => ({ time, open, high, low, close })));
    this.volume.setData(this.series.candles.map((c) => this.bar(c)));
    if (latest) this.apply(latest, { count: false });
    this.chart.timeScale().scrollToRealTime();
    this.describe();
  }

  /** A live quote of the charted symbol: it moves the last candle, or starts the next minute's. */
  apply(quote, { count = true } = {}) {
    const candle = this.series?.apply(quote);
    if (!candle) return;
    const { time, open, high, low, close } = candle;
    this.candles.update({ time, open, high, low, close });
    this.volume.update(this.bar(candle));
    if (count) this.updates += 1;
    this.describe();
  }

  bar(candle) {
    return { time: candle.time, value: candle.volume, color: candle.close >= candle.open ? "#1e844966" : "#c0392b66" };
  }

  describe() {
    const last = this.series?.last;
    Object.assign(this.container.dataset, {
      candles: String(this.series?.candles.length ?? 0),
      updates: String(this.updates),
      lastTime: last ? String(last.time) : "",
      lastClose: last ? String(last.close) : "",
    });
  }
}
