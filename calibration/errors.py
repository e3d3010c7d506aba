"""Errors of the calibration package.

:class:`CalibrationError` is what bad calibration input (a file, a field, a set of views or
poses that cannot give a trustworthy answer) raises. It is an
:class:`~models.base.errors.InputError`, so the ``iort`` command line reports it as one line
with exit code 2. Messages name the file or field, what is wrong and what to do.
"""

from __future__ import annotations

from models.base.errors import InputError


class CalibrationError(InputError):
    """Calibration input is wrong or too weak to calibrate from.

    Examples
    --------
    >>> isinstance(CalibrationError("calib.json: field 'image_size' missing"), InputError)
    True
    """
