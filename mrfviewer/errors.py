"""Exceptions shared by the core.

Every problem caused by user input (files, parameters, settings) raises
:class:`MRFError` (or a subclass) with a message meant to be shown to the user
as is: it names the file or the setting and the problem.
"""


class MRFError(ValueError):
    """Bad input or settings, with a message a user can act on."""


class Cancelled(Exception):
    """A long job was cancelled by the user; no result is produced."""
