// A small live line chart on a canvas (no library: the page loads nothing
// from elsewhere). The scale follows the largest value shown.

export class Chart {
  /** A chart drawn on `canvas` that keeps the last `size` values. */
  constructor(canvas, size) {
    this.canvas = canvas;
    this.size = size;
    this.points = [];
    this.draw();
  }

  /** Adds a value and redraws. */
  push(value) {
    this.points.push(value);
    if (this.points.length > this.size) this.points.shift();
    this.canvas.dataset.points = String(this.points.length);
    this.canvas.dataset.last = String(value);
    this.draw();
    this.canvas.dataset.max = String(Math.max(...this.points));
  }

  draw() {
    const { width, height } = this.canvas;
    const g = this.canvas.getContext("2d");
    if (!g) return;
    g.clearRect(0, 0, width, height);
    g.fillStyle = "#f5f6f8";
    g.fillRect(0, 0, width, height);
    const max = Math.max(1, ...this.points);
    const step = width / Math.max(1, this.size - 1);
    // The newest value at the right edge, older ones to its left.
    const x = (i) => width - (this.points.length - 1 - i) * step;
    const y = (v) => height - 4 - (v / max) * (height - 16);
    g.strokeStyle = "#dde";
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(0, y(0) + 0.5);
    g.lineTo(width, y(0) + 0.5);
    g.stroke();
    if (this.points.length > 0) {
      g.beginPath();
      this.points.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
      g.strokeStyle = "#2a6fdb";
      g.lineWidth = 1.5;
      g.stroke();
    }
    g.fillStyle = "#667";
    g.font = "10px system-ui, sans-serif";
    g.fillText(`max ${max}`, 4, 10);
    const last = this.points.at(-1);
    if (last !== undefined) {
      const text = String(last);
      g.fillText(text, width - 4 - g.measureText(text).width, 10);
    }
  }
}
