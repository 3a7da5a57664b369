"""The reference for issue 17: a Pyro4 daemon like the old datastore's
(service.ipcdatastore: the object "kodi-IPC", pickle accepted), holding the
one key pyro_plugin.py reads. Prints its port, then serves until killed.

    python3 pyro_daemon.py PYRO_DIR   # PYRO_DIR: where Pyro4 is installed (pip install --target)
"""

import sys
import time

sys.path.insert(0, sys.argv[1])

import Pyro4  # noqa: E402

Pyro4.config.SERIALIZERS_ACCEPTED.add("pickle")


@Pyro4.expose
class DataObjects:
    """The old server's store: (author, name) -> (value, ts)."""

    def __init__(self):
        self.data = {("coldstart", "key"): ({"temp": 21.5, "city": "Oslo"}, time.time())}

    def get(self, name, author, requestor=None):
        return self.data[(author, name)]


daemon = Pyro4.Daemon(host="127.0.0.1", port=0)
daemon.register(DataObjects(), "kodi-IPC")
print(daemon.locationStr.rsplit(":", 1)[1], flush=True)
daemon.requestLoop()
