"""Stands in for Kodi's xbmcaddon module in tests: the running addon is
``script.oldstyle.addon``; any other id is not installed, and Kodi then
raises RuntimeError, as here."""

ME = "script.oldstyle.addon"


class Addon:
    def __init__(self, id=None):
        if id not in (None, ME):
            raise RuntimeError("Unknown addon id '%s'." % id)

    def getAddonInfo(self, name):
        return {"id": ME}[name]

    def getSetting(self, name):
        return ""
