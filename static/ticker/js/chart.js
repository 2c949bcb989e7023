// Small canvas charts, written here rather than pulled in: a sparkline and a line chart.

function bounds(values) {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (min === max) {
    min -= 0.5;
    max += 0.5;
  }
  return { min, max };
}

function trace(ctx, values, x0, y0, width, height) {
  const { min, max } = bounds(values);
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = x0 + (values.length === 1 ? width : (i / (values.length - 1)) * width);
    const y = y0 + height - ((v - min) / (max - min)) * height;
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
  return { min, max };
}

function colourFor(values) {
  return values.length > 1 && values[values.length - 1] < values[0] ? "#c0392b" : "#1e8449";
}

export function drawSparkline(canvas, values) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!values.length) return;
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = colourFor(values);
  trace(ctx, values, 1, 2, canvas.width - 2, canvas.height - 4);
}

export function drawChart(canvas, points) {
  const ctx = canvas.getContext("2d");
  const pad = { left: 56, right: 8, top: 8, bottom: 22 };
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#666";
  if (points.length < 2) {
    ctx.fillText("Waiting for prices…", pad.left, canvas.height / 2);
    return;
  }
  const values = points.map((p) => p.price);
  const width = canvas.width - pad.left - pad.right;
  const height = canvas.height - pad.top - pad.bottom;
  ctx.strokeStyle = "#ddd";
  ctx.strokeRect(pad.left, pad.top, width, height);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = colourFor(values);
  const { min, max } = trace(ctx, values, pad.left, pad.top, width, height);
  ctx.fillText(max.toFixed(2), 4, pad.top + 10);
  ctx.fillText(min.toFixed(2), 4, pad.top + height);
  const first = new Date(points[0].ts);
  const last = new Date(points[points.length - 1].ts);
  ctx.fillText(first.toLocaleTimeString(), pad.left, canvas.height - 6);
  const lastLabel = last.toLocaleTimeString();
  ctx.fillText(lastLabel, canvas.width - pad.right - ctx.measureText(lastLabel).width, canvas.height - 6);
}
