// The table's sparklines, on canvas: a day's one-minute closes, coloured as the row's change is
// (against the previous close), with the previous close as a faint baseline when it is in view.

const COLOURS = { up: "#1e8449", down: "#c0392b", "": "#666" };

export function drawSparkline(canvas, values, { trend = "", prevClose = null } = {}) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!values.length) return;
  let min = Math.min(...values);
  let max = Math.max(...values);
  if (min === max) {
    min -= 0.5;
    max += 0.5;
  }
  const [x0, y0, width, height] = [1, 2, canvas.width - 2, canvas.height - 4];
  const y = (v) => y0 + height - ((v - min) / (max - min)) * height;
  if (prevClose !== null && prevClose >= min && prevClose <= max) {
    ctx.strokeStyle = "#bbb";
    ctx.lineWidth = 1;
    ctx.setLineDash([2, 2]);
    ctx.beginPath();
    ctx.moveTo(x0, y(prevClose));
    ctx.lineTo(x0 + width, y(prevClose));
    ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = COLOURS[trend];
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = x0 + (values.length === 1 ? width : (i / (values.length - 1)) * width);
    if (i === 0) ctx.moveTo(x, y(v));
    else ctx.lineTo(x, y(v));
  });
  ctx.stroke();
}
