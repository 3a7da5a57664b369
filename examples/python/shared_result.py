"""Several processes need the same slow, I/O-bound result: it is gathered
once, by whichever process claims it first, and every process watches it.

Run it several times at once (with the server running):

    for i in 1 2 3; do python3 examples/python/shared_result.py & done; wait

Each prints the result; exactly one says it gathered it. The claim is a
compare-and-set on shared.forecast.claim (if_rev=0: only if nobody claimed).
"""

import os
import time

from ipcbus import Bus, RevMismatch

KEY = "shared.forecast"


def gather():
    time.sleep(0.5)  # the slow, I/O-bound part, done once
    return {"days": ["sun", "rain", "sun"], "by": os.getpid()}


def main():
    with Bus(timeout=30) as bus, bus.watch(KEY) as result:
        try:
            bus.set(KEY + ".claim", os.getpid(), if_rev=0)
            bus.set(KEY, gather())
            role = "gathered"
        except RevMismatch:
            role = "shared"
        result.wait_synced(10)
        while KEY not in result:
            result.wait_changed(result.version, 30)
        print("%s %s" % (role, result[KEY]["days"]), flush=True)


if __name__ == "__main__":
    main()
