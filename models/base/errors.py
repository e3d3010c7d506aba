"""Error types the program reports to its user.

Every error raised for bad input from outside (files, fields, CLI values) is an
:class:`InputError`: its message names the file or field, what is wrong and what to do.
The command line prints it as one line and exits with code 2.
"""

from __future__ import annotations


class IortError(Exception):
    """Base of all errors that are meant to be shown to the user as one clear line."""


class InputError(IortError, ValueError):
    """Input from outside (a file, a field, an argument) is wrong.

    The message names the file or field, the problem and what to do about it.
    """
