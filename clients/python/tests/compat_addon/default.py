# -*- coding: utf-8 -*-
# An addon script written for service.ipcdatastore, the way its docs and
# its own default.py used IPCClientX. The only change for ipcbus is the
# import of IPCClientX (it was `from resources.lib.ipcclientx import
# IPCClientX`). tests/test_compat.py runs it against a real bus, with
# xbmc.py and xbmcaddon.py beside it standing in for Kodi's modules.
import sys

import xbmc
import xbmcaddon

from ipcbus.compat import IPCClientX

client = IPCClientX(addon_id='service.ipcdatastore')
xbmc.log('ipcdatastore: Attempting to contact server at: {0}'.format(client.uri))
if not client.server_available():
    xbmc.log('service.ipcdatastore server unavailable')
    sys.exit(1)

# Like the old service's own check: a persisted value under this addon's id.
client.set('x', 20, persist=True)
y = client.get('x')
if y != 20:
    raise ValueError('ipcdatastore: IPC Server check failed')
xbmc.log('x = {0}'.format(y))

# Like its player demo: a dict under an explicit author, read back as a tuple.
client.raise_exception = True
client.set('videodata', {'dwidth': 1920, 'dheight': 1080, 'fps': 23.976}, author='service.ipcdatastore')
nt = client.get('videodata', author='service.ipcdatastore', requestor='testclient', return_tuple=True)
xbmc.log('{0}x{1} @ {2} cached={3}'.format(nt.value['dwidth'], nt.value['dheight'], nt.value['fps'], nt.cached))
nt = client.get('videodata', author='service.ipcdatastore', requestor='testclient', return_tuple=True)
xbmc.log('again cached={0}'.format(nt.cached))

client.set('pair', (7, 'hello'))
xbmc.log('pair = {0!r}'.format(client.get('pair')))
me = xbmcaddon.Addon().getAddonInfo('id')
xbmc.log('names = {0}'.format(sorted(client.get_data_list(me)[me])))

try:
    client.get('garbage')
except Exception as e:
    xbmc.log('error = {0}'.format(e.__class__.__name__))
