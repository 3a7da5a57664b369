"""Issue 17's plugin: what a Kodi plugin does each time a folder opens, in a
fresh Python process: connect, read one key, print it, exit.

    python3 plugin.py [--no-msgpack] [--compat] [--client DIR]

``--no-msgpack`` hides msgpack as if it were not installed (Kodi ships
none), so the client speaks JSON; otherwise it uses MessagePack when the
interpreter has it. ``--client DIR`` puts DIR (which holds the ``ipcbus``
package) first on the path, as Kodi puts an addon's lib folder.
``--compat`` reads the same value through the old datastore's API
(``ipcbus.compat.IPCClientX``), as an addon moved over from it does. The
server's URL and token come from $IPCBUS_URL and $IPCBUS_DATA_DIR, as
run.sh sets them.
"""

import sys

if "--no-msgpack" in sys.argv:
    sys.modules["msgpack"] = None  # type: ignore[assignment]
if "--client" in sys.argv:
    sys.path.insert(0, sys.argv[sys.argv.index("--client") + 1])

if "--compat" in sys.argv:
    from ipcbus.compat import IPCClientX

    print(IPCClientX().get("key", "coldstart"))
else:
    import ipcbus

    with ipcbus.Bus() as bus:
        print(bus.get("coldstart.key"))
