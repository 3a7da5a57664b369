// The dashboard's entry point: the token, the connection, the pattern filter,
// and the wiring of the key tree (tree.js) to the detail panel (editor.js)
// and the server panel (server.js).
import { Bus, BadPattern } from "./client/index.js";
import { Editor } from "./editor.js";
import { askToken, checkToken, forgetToken, takeToken } from "./login.js";
import { KeyTree } from "./tree.js";
import { nowPlaying } from "./nowplaying.js";
import { serverPanel } from "./server.js";

const $ = (id) => document.getElementById(id);
/** How long the first connection may take before the page says so. */
const CONNECT_TIMEOUT_MS = 10000;
/** The server's namespace (docs/protocol.md §9.1). */
const SYS_PREFIX = "ipcbus.sys.";

function showState(state, reason = "") {
  $("state").textContent = state;
  $("state").dataset.state = state;
  $("state-reason").textContent = state === "open" ? "" : reason;
}

/** A token the server takes: from the fragment or this tab, else asked for. */
async function token() {
  let token = takeToken();
  let why = token ? "" : "No token: this page needs the bus's access token.";
  for (;;) {
    if (token) {
      const verdict = await checkToken(token);
      if (verdict === "ok") return token;
      forgetToken();
      why = verdict === "refused" ? "The server refused this token (401). Check it and try again." : "The server cannot be reached. Is ipcbus serve running?";
    }
    showState("locked");
    token = await askToken(why);
    showState("connecting");
  }
}

async function main() {
  const given = await token();
  $("main").hidden = false;
  $("logout").hidden = false;
  $("logout").onclick = () => {
    forgetToken();
    location.reload();
  };
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const bus = await Bus.connect(`${scheme}//${location.host}/ws`, {
    token: given,
    connectTimeout: CONNECT_TIMEOUT_MS,
    onState: (state, reason) => showState(state, reason),
  });
  showState(bus.state);
  let editor;
  const tree = new KeyTree($("rows"), $("rows-space"), (key, entry) => editor.show(key, entry));
  editor = new Editor($("detail"), bus, (key) => tree.entry(key));
  $("new-key").onclick = () => editor.create();
  nowPlaying(bus, $("nowplaying"));
  serverPanel(bus, $("server"), given);

  let sub = null;
  const count = () => ($("count").textContent = `${tree.size} keys`);
  const follow = async (pattern) => {
    sub?.close();
    sub = null;
    tree.clear();
    $("filter-error").textContent = "";
    try {
      // The server's own keys (its figures, once a second) show in the
      // server panel; in the tree only when the pattern names them.
      const hideSys = !pattern.startsWith("ipcbus");
      // meta: each value's age and options (persisted, ephemeral, TTL).
      const show = (ev) => {
        if (hideSys && ev.key?.startsWith(SYS_PREFIX)) return;
        tree.push(ev);
        if (ev.kind === "synced") $("rows").dataset.synced = pattern;
      };
      sub = await bus.subscribe(pattern, show, { meta: true });
    } catch (e) {
      $("filter-error").textContent = e instanceof BadPattern ? `not a pattern: ${e.message}` : e.message;
    }
  };
  // Counts follow the drawing, at most once a frame.
  setInterval(count, 250);
  $("filter").addEventListener("change", () => follow($("filter").value.trim() || ">"));
  await follow($("filter").value.trim() || ">");
}

main().catch((e) => showState("error", String(e && e.message || e)));
