"""Stands in for Kodi's xbmc module in tests: log() prints, flushed."""

LOGDEBUG = 0


def log(msg, level=LOGDEBUG):
    print(msg, flush=True)
