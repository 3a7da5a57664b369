"""The old calls that saved data: ``savedata``/``restoredata``/
``delete_data`` and ``add_persistence``/``remove_persistence``.

The old server pickled an author's data to a file in its own addon_data
folder; here the snapshot is a persisted value on the bus itself
(``ipcx-saved.<addon>.<author>``), so it works wherever the bus runs and
survives its restarts, and no file is written on the addon's side. The bus
persists per write, so marking a value (un)persisted writes it again, same
value and time, with a compare-and-set so a concurrent write is not undone.
"""

from .. import errors
from . import keys, values
from .errors import RestoreFailedError, SaveFailedError, UnknownError


class SavedData:
    """Mixed into :class:`IPCClientX`."""

    def savedata(self, author=None):
        """Saves a snapshot of ``author``'s values (default: this addon's) on
        the bus, persisted. True, or False on failure."""
        author = str(self.addonname if author is None else author)

        def save():
            key = keys.saved_key(str(self.addonname), author)
            bus = self._connected()
            items = {}
            for stored_key in bus.keys(keys.pattern_for(author)):
                pair = keys.split(stored_key)
                try:
                    if pair is not None:
                        items[pair[1]] = bus.get(stored_key)
                except errors.NotFound:
                    pass  # deleted meanwhile
            try:
                bus.set(key, {"author": author, "items": items}, persist=True)
            except errors.ServerError as e:
                exc = SaveFailedError()
                exc.updatemessage(author, key)
                exc.message += ": %s" % e
                raise exc
            return True

        return self._attempt(save, False)

    def restoredata(self, author=None):
        """Sets ``author``'s values again from the last :meth:`savedata`,
        each with its saved time and persistence; other values are left as
        they are. True, or False on failure (:class:`RestoreFailedError`
        when nothing was saved)."""
        author = str(self.addonname if author is None else author)

        def restore():
            key = keys.saved_key(str(self.addonname), author)
            bus = self._connected()
            snapshot = bus.get(key, None)
            if not isinstance(snapshot, dict) or not isinstance(snapshot.get("items"), dict):
                exc = RestoreFailedError()
                exc.updatemessage(author, key)
                exc.message += ": nothing saved (File Not Found)"
                raise exc
            for name, stored in snapshot["items"].items():
                persist = values.is_envelope(stored) and bool(stored.get("persist"))
                bus.set(self._key(author, name), stored, persist=persist)
            return True

        done = self._attempt(restore, False)
        self.clearcache()
        return done

    def delete_data(self, author=None):
        """Deletes the snapshot :meth:`savedata` made. True, or False on
        failure (:class:`UnknownError` when there is none, as before)."""
        author = str(self.addonname if author is None else author)

        def remove():
            key = keys.saved_key(str(self.addonname), author)
            try:
                self._connected().delete(key)
            except errors.NotFound:
                raise UnknownError("no data saved for author=%s (%s): File Not Found" % (author, key))
            return True

        return self._attempt(remove, False)

    def add_persistence(self, varname, author=None):
        """Makes a stored value persisted: it survives a restart of the bus.
        True, or False on failure (:class:`VarNotFoundError`)."""
        return self._persistence(varname, author, True)

    def remove_persistence(self, varname, author=None):
        """Makes a stored value no longer persisted. True, or False."""
        return self._persistence(varname, author, False)

    def _persistence(self, varname, author, persist):
        author = self.addonname if author is None else author

        def mark(bus, key, stored, rev):
            bus.set(key, values.with_persist(stored, persist), if_rev=rev, persist=persist)

        def update():
            self._update(self._key(author, varname), mark)
            return True

        return self._attempt(update, False, varname, author)
