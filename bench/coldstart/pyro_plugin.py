"""The old way, for issue 17's reference: a plugin that reads one value
from a Pyro4 daemon (pyro_daemon.py) as the old IPCClientX did (pickle),
and exits.

    python3 pyro_plugin.py PYRO_DIR PORT
"""

import sys

sys.path.insert(0, sys.argv[1])

import Pyro4  # noqa: E402

Pyro4.config.SERIALIZER = "pickle"
with Pyro4.Proxy("PYRO:kodi-IPC@127.0.0.1:%s" % sys.argv[2]) as proxy:
    print(proxy.get("key", "coldstart")[0])
