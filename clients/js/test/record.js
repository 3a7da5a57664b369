// What tests record of a client: its states, and a subscription's events.

/** Records a bus's states (for `onState`); `reached(state, n)` waits for the n-th. */
export function states() {
  const seen = [];
  const waits = [];
  const check = () => {
    for (const w of [...waits]) {
      if (seen.filter(([s]) => s === w.state).length >= w.n) waits.splice(waits.indexOf(w), 1) && w.resolve();
    }
  };
  return {
    seen,
    onState: (state, reason) => {
      seen.push([state, reason]);
      check();
    },
    reached: (state, n = 1) =>
      new Promise((resolve) => {
        waits.push({ state, n, resolve });
        check();
      }),
  };
}

/** Events by key, and a promise for the first event that `match` accepts. */
export function collector() {
  const events = [];
  const waiters = [];
  return {
    events,
    callback: (ev) => {
      events.push(ev);
      for (const w of waiters.splice(0)) if (!w(ev)) waiters.push(w);
    },
    when: (match) =>
      new Promise((resolve) => {
        const found = events.find(match);
        if (found) return resolve(found);
        waiters.push((ev) => match(ev) && (resolve(ev), true));
      }),
  };
}
