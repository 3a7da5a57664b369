"""service.ipcbus: connects Kodi to ipcbus.

- ``settings``: the addon's settings, read into one immutable value.
- ``runner``: starts and stops ``ipcbus serve`` as a child of Kodi.
- ``publisher``: an ``xbmc.Player`` that publishes ``kodi.player.state``
  and ``kodi.player.item`` (the shapes are in docs/kodi.md).
- ``selftest``: the startup self-test and the full self-test report.
- ``service``: the service loop; reacts to settings changes.
- ``actions``: what the settings dialog's buttons run.
"""

#: The addon's id; also the folder of its profile data.
ADDON_ID = "service.ipcbus"
