"""A hotkey script, run once: it asks the weather service to refresh now.
The service reacts within milliseconds, because the request is pushed to it.

Run it (with the server and publisher.py running):

    python3 examples/python/hotkey.py
"""

import time

from ipcbus import Bus

with Bus() as bus:
    rev = bus.set("svc.weather.refresh", str(int(time.time() * 1000)))
    print("refresh requested (rev %d)" % rev)
