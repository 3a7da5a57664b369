"""Kodi starts this file (the xbmc.service extension) when the addon is enabled."""

from resources.lib.ipcbus_service.service import run

run()
