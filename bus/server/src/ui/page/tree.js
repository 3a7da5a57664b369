// The live key browser: keys as a tree of dot-separated tokens, with a count
// per subtree, drawn in batches (one per animation frame) and virtualised:
// only the rows in view exist in the DOM, so 10 000 keys cost ~40 rows.
import { age, entryOf, left, preview } from "./values.js";

/** Height of one row in px; style.css's .row uses the same. */
export const ROW_HEIGHT = 24;
/** How long a changed row stays highlighted. */
const FLASH_MS = 1000;
/** Rows drawn beyond the visible ones, above and below. */
const OVERSCAN = 10;
/** Names in natural order: k2 before k10. */
const NAMES = new Intl.Collator(undefined, { numeric: true });

class Node {
  constructor(name, path, depth, parent) {
    Object.assign(this, { name, path, depth, parent, entry: null, count: 0 });
    this.children = new Map();
  }
}

export class KeyTree {
  /**
   * @param {HTMLElement} box the scrolling container
   * @param {HTMLElement} space the tall element inside it that rows are placed in
   * @param {(key: string|null, entry: object|null) => void} onSelected the selected key and its entry,
   *   at selection and whenever that key changes
   */
  constructor(box, space, onSelected) {
    Object.assign(this, { box, space, onSelected });
    this.clear();
    this.collapsed = new Set();
    this.selected = null;
    this.frame = 0;
    box.addEventListener("scroll", () => this.schedule());
    box.addEventListener("click", (e) => this.click(e));
    // Ages move, TTLs count down and flashes end without any event: one
    // timer for all, which redraws the rows in view only.
    setInterval(() => this.schedule(), 1000);
  }

  /** Forgets every key (a new pattern). */
  clear() {
    this.root = new Node("", "", -1, null);
    this.entries = new Map();
    // Events not drawn yet, at most one per key (a newer one replaces it):
    // bounded by the keys the pattern matches.
    this.pending = new Map();
    this.flat = null;
    this.live = false;
    this.schedule?.();
  }

  /** Takes a subscription event; it is drawn at the next frame. */
  push(ev) {
    if (ev.kind === "synced") this.live = true;
    // The times are taken now, as the meta's age_ms and ttl_ms are relative to the sending.
    else this.pending.set(ev.key, ev.kind === "val" ? { kind: "val", key: ev.key, entry: entryOf(ev, Date.now(), this.live) } : ev);
    this.schedule();
  }

  get size() {
    return this.entries.size;
  }

  entry(key) {
    return this.entries.get(key) ?? null;
  }

  select(key) {
    this.selected = key;
    this.onSelected(key, this.entry(key));
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.draw());
  }

  apply() {
    for (const ev of this.pending.values()) {
      const had = this.entries.get(ev.key);
      if (ev.kind === "val") {
        const { entry } = ev;
        this.entries.set(ev.key, entry);
        if (!had) this.insert(ev.key, entry);
        else this.nodeOf(ev.key).entry = entry;
      } else if (had) {
        this.entries.delete(ev.key);
        this.remove(ev.key);
      }
      if (ev.key === this.selected) this.onSelected(ev.key, this.entry(ev.key));
    }
    this.pending.clear();
  }

  nodeOf(key) {
    let node = this.root;
    for (const token of key.split(".")) node = node?.children.get(token);
    return node;
  }

  insert(key, entry) {
    let node = this.root;
    for (const token of key.split(".")) {
      node.count += 1;
      let child = node.children.get(token);
      if (!child) {
        const path = node.path ? `${node.path}.${token}` : token;
        child = new Node(token, path, node.depth + 1, node);
        node.children.set(token, child);
      }
      node = child;
    }
    node.count += 1;
    node.entry = entry;
    this.flat = null;
  }

  remove(key) {
    let node = this.nodeOf(key);
    node.entry = null;
    for (let n = node; n; n = n.parent) n.count -= 1;
    // Drop nodes left with no key in them.
    while (node.parent && node.count === 0) {
      node.parent.children.delete(node.name);
      node = node.parent;
    }
    this.flat = null;
  }

  /** The rows in view order: every node whose ancestors are all expanded. */
  flatten() {
    const rows = [];
    const walk = (node) => {
      const names = [...node.children.keys()].sort(NAMES.compare);
      for (const name of names) {
        const child = node.children.get(name);
        rows.push(child);
        if (!this.collapsed.has(child.path)) walk(child);
      }
    };
    walk(this.root);
    this.flat = rows;
  }

  draw() {
    this.frame = 0;
    this.apply();
    if (!this.flat) this.flatten();
    const rows = this.flat;
    this.space.style.height = `${rows.length * ROW_HEIGHT}px`;
    const first = Math.max(0, Math.floor(this.box.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((this.box.scrollTop + this.box.clientHeight) / ROW_HEIGHT) + OVERSCAN);
    const now = Date.now();
    const shown = [];
    for (let i = first; i < last; i++) shown.push(this.row(rows[i], i, now));
    this.space.replaceChildren(...shown);
  }

  row(node, index, now) {
    const row = document.createElement("div");
    row.className = "row";
    row.setAttribute("role", "treeitem");
    row.dataset.path = node.path;
    row.style.top = `${index * ROW_HEIGHT}px`;
    const { entry } = node;
    if (entry) row.dataset.key = node.path;
    if (node.path === this.selected) row.classList.add("selected");
    if (entry && entry.flashed && now - entry.flashed < FLASH_MS) row.classList.add("flash");
    const name = cell("name");
    name.style.paddingLeft = `${node.depth * 14 + 4}px`;
    const toggle = cell("toggle");
    if (node.children.size) {
      toggle.textContent = this.collapsed.has(node.path) ? "▸" : "▾";
      row.setAttribute("aria-expanded", String(!this.collapsed.has(node.path)));
    }
    const label = cell("label");
    label.textContent = node.name;
    name.append(toggle, label);
    if (node.children.size) {
      const count = cell("count");
      count.textContent = String(node.count);
      count.title = `${node.count} keys in ${node.path}`;
      name.append(count);
    }
    const value = cell("value");
    const options = cell("options");
    const rev = cell("rev");
    const changed = cell("age");
    if (entry) {
      value.textContent = preview(entry.value);
      options.append(...badges(entry, now));
      rev.textContent = String(entry.rev);
      changed.textContent = age(entry.changed, now);
    }
    row.append(name, value, options, rev, changed);
    return row;
  }

  click(e) {
    const row = e.target.closest(".row");
    if (!row) return;
    const path = row.dataset.path;
    if (e.target.classList.contains("toggle") || row.dataset.key === undefined) {
      if (this.collapsed.has(path)) this.collapsed.delete(path);
      else this.collapsed.add(path);
      this.flat = null;
      this.schedule();
      return;
    }
    this.select(path);
  }
}

/** A key's options as small labels: "persisted", "ephemeral", "TTL 12 s" (counting down). */
function badges(entry, now) {
  const shown = [];
  const badge = (kind, text, title) => {
    const span = cell(`badge ${kind}`);
    span.textContent = text;
    span.title = title;
    shown.push(span);
  };
  if (entry.persist) badge("persisted", "persisted", "on disk: survives a restart of the server");
  if (entry.ephemeral) badge("ephemeral", "ephemeral", "deleted when the session that wrote it ends");
  if (entry.expires) badge("ttl", `TTL ${left(entry.expires, now)}`, "deleted when the time is up");
  return shown;
}

function cell(className) {
  const span = document.createElement("span");
  span.className = className;
  return span;
}
