"""RunScript(service.ipcbus,<action>): the settings dialog's action buttons."""

import sys

from resources.lib.ipcbus_service.actions import main

main(sys.argv[1:])
