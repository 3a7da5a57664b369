"""The client's log, the ``ipcbus`` logger of :mod:`logging`, got when
something is logged: importing ``logging`` (with ``traceback``, ``re`` and
more) is a noticeable part of a plugin's cold start, and connecting and
reading log nothing a default setup shows.

A debug or info record is passed on only when ``logging`` is already
imported: otherwise nothing has configured it, and the default setup drops
such records anyway. Warnings and errors always import it (by default they
are printed to stderr).
"""

import sys


def logger():  # -> logging.Logger
    import logging

    return logging.getLogger("ipcbus")


def debug(msg: str, *args: object) -> None:
    if "logging" in sys.modules:
        logger().debug(msg, *args, stacklevel=2)


def info(msg: str, *args: object) -> None:
    if "logging" in sys.modules:
        logger().info(msg, *args, stacklevel=2)


def warning(msg: str, *args: object) -> None:
    logger().warning(msg, *args, stacklevel=2)


def exception(msg: str, *args: object) -> None:
    """Logs ``msg`` with the exception being handled."""
    logger().exception(msg, *args, stacklevel=2)
