// The server panel: the figures the server publishes on ipcbus.sys.stats
// while this page watches it (docs/protocol.md §15), two live charts, and
// the "Run self-test" button (POST /v1/selftest, docs/http.md).
import { Chart } from "./chart.js";

/** Points each chart keeps: a minute at one value a second. */
const HISTORY = 60;

/** [label, how to show it] for each figure, in the order shown. */
const FIGURES = [
  ["connections", (s) => s.connections],
  ["subscriptions", (s) => s.subscriptions],
  ["keys", (s) => s.keys],
  ["writes/s", (s) => s.writes_per_s],
  ["deliveries/s", (s) => s.deliveries_per_s],
  ["conflation skips", (s) => s.conflation_skips],
  ["outbox", (s) => bytes(s.outbox_bytes)],
  ["slowest", (s) => (Array.isArray(s.slowest) && s.slowest.length ? s.slowest.map((o) => `#${o.session} ${bytes(o.bytes)}`).join(", ") : "none waiting")],
  ["overflows", (s) => s.outbox_overflows],
  ["persistence", (s) => (s.persistence?.reason ? `${s.persistence.status}: ${s.persistence.reason}` : s.persistence?.status)],
  ["self-test", (s) => s.selftest],
  ["Kodi bridge", (s) => s.kodi ?? "off"],
  ["backplane", (s) => s.backplane ?? "off"],
];

function bytes(n) {
  if (!Number.isFinite(n)) return "";
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
}

const el = (tag, props = {}) => Object.assign(document.createElement(tag), props);

/** Builds the panel in `card` and follows ipcbus.sys.stats until the page closes. */
export async function serverPanel(bus, card, token) {
  const values = new Map();
  const list = el("dl", { className: "figures", id: "figures" });
  for (const [label] of FIGURES) {
    const dd = el("dd", { textContent: "…" });
    dd.dataset.figure = label;
    values.set(label, dd);
    list.append(el("dt", { textContent: label }), dd);
  }
  const writes = new Chart(el("canvas", { id: "chart-writes", className: "chart", width: 360, height: 56 }), HISTORY);
  const deliveries = new Chart(el("canvas", { id: "chart-deliveries", className: "chart", width: 360, height: 56 }), HISTORY);
  const run = el("button", { id: "selftest", type: "button", textContent: "Run self-test" });
  const outcome = el("span", { id: "selftest-outcome", className: "muted" });
  const actions = el("div", { className: "actions" });
  actions.append(run, outcome);
  const updated = el("p", { id: "stats-age", className: "muted", textContent: "waiting for the first figures…" });
  card.replaceChildren(
    el("h2", { textContent: "Server" }),
    list,
    el("p", { className: "chart-label", textContent: "writes/s" }),
    writes.canvas,
    el("p", { className: "chart-label", textContent: "deliveries/s" }),
    deliveries.canvas,
    actions,
    updated,
  );
  run.onclick = () => selfTest(run, outcome, token);

  const mirror = await bus.watch("ipcbus.sys.stats");
  for (;;) {
    const stats = mirror.get("ipcbus.sys.stats");
    if (stats && typeof stats === "object") {
      for (const [label, show] of FIGURES) values.get(label).textContent = String(show(stats) ?? "");
      writes.push(Number(stats.writes_per_s) || 0);
      deliveries.push(Number(stats.deliveries_per_s) || 0);
      updated.textContent = `updated ${new Date().toLocaleTimeString()} · rev ${stats.rev}`;
      card.dataset.rev = String(stats.rev);
    }
    await mirror.changed();
  }
}

/** Runs the server's self-test and shows its outcome as text. */
async function selfTest(button, outcome, token) {
  button.disabled = true;
  outcome.className = "muted";
  outcome.textContent = "running…";
  try {
    const res = await fetch("/v1/selftest", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    const body = await res.json().catch(() => ({}));
    const passed = res.ok && body.selftest === "passed";
    outcome.className = passed ? "passed" : "error";
    outcome.textContent = passed ? `passed in ${body.ms} ms` : String(body.selftest ?? body.error?.msg ?? `HTTP ${res.status}`);
  } catch (e) {
    outcome.className = "error";
    outcome.textContent = `cannot reach the server: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}
