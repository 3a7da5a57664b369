"""A background service that gathers slow data and publishes it.

Run it (with `cargo run --release -p ipcbus -- serve` running, and
`pip install ./clients/python` done):

    python3 examples/python/publisher.py

It publishes svc.weather.today after each (simulated, slow) scrape, marks
itself online at svc.weather.online, and scrapes again at once when someone
sets svc.weather.refresh (see hotkey.py). It never polls, and it keeps
running when the bus restarts: the Bus reconnects by itself, its
subscription resumes, and a set made meanwhile waits for the bus. IPCBUS_URL
picks the server (default ws://127.0.0.1:9099/ws); SCRAPES=N stops after N
scrapes.
"""

import os
import queue
import time

from ipcbus import Bus, Unavailable

SCRAPE_TIME = 0.3  # seconds the pretend scrape takes
PERIOD = 30.0  # seconds between scrapes when nobody asks for one


def scrape(n):
    time.sleep(SCRAPE_TIME)
    return {"city": "Oslo", "temp_c": -3.0 + (n % 7) * 0.5, "scraped_at": int(time.time()), "scrape": n}


def publish(bus, key, value):
    """Sets ``key``; returns its rev. Setting the same state twice is
    harmless here, so a set the bus may or may not have applied when the
    connection dropped (``Unavailable``) is simply made again."""
    while True:
        try:
            return bus.set(key, value)
        except Unavailable as e:
            print("publishing %s again: %s" % (key, e), flush=True)


def main():
    limit = int(os.environ.get("SCRAPES", "0")) or None
    refresh = queue.Queue()
    live = []  # becomes non-empty at "synced": a request left from before is not one for us

    def on_refresh(event):
        if event.kind == "synced":
            live.append(True)
        elif event.kind == "val" and live:
            refresh.put(event.value)

    with Bus() as bus:
        bus.subscribe("svc.weather.refresh", on_refresh)
        bus.set("svc.weather.online", True)
        n = 0
        while True:
            n += 1
            rev = publish(bus, "svc.weather.today", scrape(n))
            print("published scrape %d as rev %d" % (n, rev), flush=True)
            if limit and n >= limit:
                break
            try:
                refresh.get(timeout=PERIOD)  # woken by a push, not by polling
            except queue.Empty:
                pass
        bus.set("svc.weather.online", False)


if __name__ == "__main__":
    main()
