"""A plugin started at any time: it shows the service's data at once, from
the bus's replay, then follows every change. No polling.

Run it (with the server and publisher.py running):

    python3 examples/python/plugin.py

IPCBUS_URL picks the server; UPDATES=N exits after N live updates.
"""

import os

from ipcbus import Bus


def main():
    updates = int(os.environ.get("UPDATES", "-1"))
    with Bus() as bus, bus.watch("svc.weather.>") as weather:
        weather.wait_synced(10)
        shown_rev, seen = None, -1  # the first thing shown is the replay, not an update
        while True:
            version = weather.version
            rev = weather.rev("svc.weather.today") if "svc.weather.today" in weather else None
            if rev != shown_rev:
                w = weather.get("svc.weather.today")
                print("no weather yet" if w is None else "%s: %.1f °C (scrape %d)" % (w["city"], w["temp_c"], w["scrape"]), flush=True)
                seen += 1
                shown_rev = rev
            if 0 <= updates <= seen:
                return
            weather.wait_changed(version)


if __name__ == "__main__":
    main()
