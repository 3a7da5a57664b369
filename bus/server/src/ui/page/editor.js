// The detail panel: one key's value, and the writes (set, edit with ifRev, delete).
// An edit that meets a newer rev (RevMismatch) shows both values and lets the user choose.
import { RevMismatch } from "./client/index.js";
import { age, parseJson, pretty } from "./values.js";

/** When the value was written, in words. */
function written(entry) {
  if (entry.changed) return ` · changed ${age(entry.changed)} ago`;
  // With meta and no age: restored from the server's data file, which keeps no times.
  return entry.meta ? " · written before the server last started" : " · unchanged since the page loaded";
}

/** The value's options in words (protocol.md §3). */
function optionsText(entry) {
  if (!entry.meta) return "Options not known: the server does not send them.";
  const words = [];
  if (entry.persist) words.push("persisted: on disk, survives a restart of the server");
  if (entry.ephemeral) words.push("ephemeral: deleted when the session that wrote it ends");
  if (entry.expires) words.push(`expires at ${new Date(entry.expires).toLocaleTimeString()}`);
  return words.length ? `${words.join(" · ")}.` : "In memory until it is overwritten or deleted.";
}

const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};
const button = (text, onclick, className = "") => el("button", { type: "button", textContent: text, onclick, className });

export class Editor {
  /** @param {HTMLElement} panel @param {import("./client/index.js").Bus} bus */
  /** @param {(key: string) => object|null} lookup the key's entry as the tree has it */
  constructor(panel, bus, lookup) {
    Object.assign(this, { panel, bus, lookup, key: null, entry: null, mode: "view" });
  }

  /** The tree's selection, or a change of the selected key. */
  show(key, entry) {
    const sameKey = key === this.key;
    this.key = key;
    this.entry = entry;
    // An edit in progress is kept; its base rev decides at save time.
    if (sameKey && this.mode !== "view") return this.refreshHeader();
    this.mode = "view";
    this.render();
  }

  refreshHeader() {
    const rev = this.panel.querySelector(".current-rev");
    if (rev) rev.textContent = this.entry ? `now rev ${this.entry.rev}` : "now deleted";
  }

  render() {
    const { key, entry } = this;
    if (!key) return this.panel.replaceChildren(el("p", { className: "muted", textContent: "Select a key to see its value, edit or delete it." }));
    if (!entry) {
      return this.panel.replaceChildren(el("h2", { className: "key", textContent: key }), el("p", { className: "muted", textContent: "deleted" }));
    }
    const meta = el("p", { className: "meta" }, `rev ${entry.rev}`, written(entry));
    this.panel.replaceChildren(
      el("h2", { className: "key", textContent: key }),
      meta,
      el("p", { className: "options-text", textContent: optionsText(entry) }),
      el("pre", { className: "value", textContent: pretty(entry.value) }),
      el("div", { className: "actions" }, button("Edit", () => this.edit()), button("Delete", () => this.confirmDelete(), "danger")),
      el("p", { className: "error", id: "editor-error" }),
    );
  }

  edit() {
    const { key, entry } = this;
    this.mode = "edit";
    const base = entry.rev;
    // A persisted value stays persisted; a TTL or a tie to a session is the writer's, not the page's.
    const dropped = [entry.expires && "its TTL", entry.ephemeral && "its tie to the session that wrote it"].filter(Boolean);
    const note = dropped.length ? ` · saving drops ${dropped.join(" and ")}` : "";
    const text = el("textarea", { id: "edit-value", spellcheck: false, value: entry.value instanceof Uint8Array ? "" : JSON.stringify(entry.value, null, 2) });
    const save = () => this.save(key, text.value, base);
    this.panel.replaceChildren(
      el("h2", { className: "key", textContent: key }),
      el("p", { className: "meta" }, `editing rev ${base} · `, el("span", { className: "current-rev" }), note),
      text,
      el("div", { className: "actions" }, button("Save", save, "primary"), button("Cancel", () => this.cancel())),
      el("p", { className: "error", id: "editor-error" }),
    );
    text.focus();
  }

  cancel() {
    this.mode = "view";
    this.render();
  }

  error(message) {
    const p = this.panel.querySelector("#editor-error");
    if (p) p.textContent = message;
  }

  /** Writes `text` to `key` only if it is still at `base` (0: only if absent). */
  async save(key, text, base) {
    let value;
    try {
      value = parseJson(text);
    } catch (e) {
      return this.error(e.message);
    }
    try {
      await this.bus.set(key, value, { ifRev: base, persist: this.lookup(key)?.persist === true });
      // Shown as the tree has it; the subscription's event (before or
      // after this reply) brings the new value.
      this.mode = "view";
      this.key = key;
      this.entry = this.lookup(key);
      this.render();
    } catch (e) {
      if (e instanceof RevMismatch) return this.conflict(key, value, text, e.rev ?? 0);
      this.error(e.message);
    }
  }

  /** Someone else wrote the key first: show theirs and ours, let the user choose. */
  async conflict(key, mine, mineText, rev) {
    this.mode = "conflict";
    // Theirs as the tree has it when it is that rev, else from the bus
    // (the key may be outside the pattern shown).
    const known = this.lookup(key);
    let theirs = known && known.rev === rev ? known.value : undefined;
    if (rev && theirs === undefined) theirs = await this.bus.get(key, { default: undefined });
    const theirsText = theirs === undefined ? "(deleted)" : pretty(theirs);
    this.panel.replaceChildren(
      el("h2", { className: "key", textContent: key }),
      el("p", { className: "conflict-title", textContent: "Conflict: someone else changed this key while you edited it." }),
      el("div", { className: "conflict" },
        el("div", {}, el("h3", { textContent: rev ? `Theirs (rev ${rev})` : "Theirs (deleted)" }), el("pre", { className: "theirs", textContent: theirsText })),
        el("div", {}, el("h3", { textContent: "Yours" }), el("pre", { className: "mine", textContent: pretty(mine) })),
      ),
      el("div", { className: "actions" },
        button("Keep theirs", () => this.cancel()),
        button("Use mine", () => this.save(key, mineText, rev), "primary"),
      ),
      el("p", { className: "error", id: "editor-error" }),
    );
  }

  confirmDelete() {
    const { key, entry } = this;
    const actions = this.panel.querySelector(".actions");
    // No confirm(): the page opens no dialogs.
    actions.replaceChildren(
      el("span", { textContent: `Delete ${key}? ` }),
      button("Delete it", () => this.remove(key, entry.rev), "danger"),
      button("Keep", () => this.render()),
    );
  }

  async remove(key, rev) {
    try {
      await this.bus.delete(key, { ifRev: rev });
    } catch (e) {
      if (e instanceof RevMismatch) return this.error("It changed meanwhile: look at the new value and delete again.");
      this.error(e.message);
    }
  }

  /** A form for a key that does not exist yet (set with ifRev 0: never overwrites). */
  create() {
    this.mode = "new";
    this.key = null;
    const key = el("input", { id: "new-key-name", spellcheck: false, placeholder: "svc.name.thing" });
    const text = el("textarea", { id: "edit-value", spellcheck: false, value: "null" });
    this.panel.replaceChildren(
      el("h2", { textContent: "New key" }),
      el("label", {}, "Key ", key),
      el("label", {}, "Value (JSON) ", text),
      el("div", { className: "actions" }, button("Create", () => this.save(key.value.trim(), text.value, 0), "primary"), button("Cancel", () => this.cancel())),
      el("p", { className: "error", id: "editor-error" }),
    );
    key.focus();
  }
}
