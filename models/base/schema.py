"""File schemas: one pydantic model per file format, checked where the file is read.

Each reader of a file from outside (beam data, camera calibrations, tool definitions)
declares the file's fields once as a :class:`FileSchema` subclass, with the unit in the
field name (``_mm``, ``_mev``, ``_px``) and the accepted range in the field; the reader then
calls :func:`check_file` on the parsed JSON before building its own objects. A value
outside its range, of the wrong type, NaN or infinite (also written as the string
``"NaN"``) becomes one :class:`~models.base.errors.InputError` line naming the file, the
field (dotted path with list indices), what the field is and what was found.

Examples
--------
>>> class Plate(FileSchema):
...     width_mm: float = bounded(0.0, 500.0, "plate width (mm)")
>>> check_file(Plate, {"width_mm": 20}, source="plate.json").width_mm
20.0
>>> check_file(Plate, {"width_mm": "NaN"}, source="plate.json")
Traceback (most recent call last):
...
models.base.errors.InputError: plate.json: field width_mm (plate width (mm), 0 < x <= 500): \
Input should be a valid number, got 'NaN'; fix the value in the file
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.base.errors import InputError

S = TypeVar("S", bound="FileSchema")


class FileSchema(BaseModel):
    """Base of every file schema: unknown keys are ignored, numbers must be finite."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


def bounded(low: float | None, high: float | None, description: str, *,
            low_inclusive: bool = False, default: Any = ...) -> Any:
    """A finite number field ``low < x <= high`` (``low <= x`` with ``low_inclusive``).

    Strict: a string (``"NaN"``, ``"1.0"``) or a boolean is refused, not converted.

    Parameters
    ----------
    low, high : float or None
        Range; None for no bound on that side.
    description : str
        What the field is, with its unit; quoted in the error message.
    low_inclusive : bool
        Accept ``x == low``.
    default : optional
        Default when the key is missing (required otherwise).
    """
    limits: dict[str, float] = {}
    if low is not None:
        limits["ge" if low_inclusive else "gt"] = low
    if high is not None:
        limits["le"] = high
    lo_txt = "" if low is None else f"{low:g} {'<=' if low_inclusive else '<'} "
    hi_txt = "" if high is None else f" <= {high:g}"
    return Field(default, description=f"{description}, {lo_txt}x{hi_txt}",
                 allow_inf_nan=False, strict=True, **limits)


def _description(schema: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The description of the field at ``loc`` (walking nested models), or ""."""
    model: Any = schema
    text = ""
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not isinstance(part, str) or fields is None or part not in fields:
            continue
        info = fields[part]
        text = info.description or text
        annotation = info.annotation
        inner = [a for a in getattr(annotation, "__args__", ()) if isinstance(a, type)]
        model = next((a for a in [annotation, *inner] if isinstance(a, type)
                      and issubclass(a, BaseModel)), None)
    return text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_file(schema: type[S], data: Any, *, source: str,
               error: type[InputError] = InputError, hint: str = "") -> S:
    """Validate parsed JSON against ``schema``; one ``error`` line naming file and field.

    Parameters
    ----------
    schema : type of FileSchema
        The file format.
    data : Any
        The parsed JSON.
    source : str
        The file (or a description of it), first words of the message.
    error : type of InputError
        Exception class raised (``calibration`` passes ``CalibrationError``).
    hint : str
        What to do, appended to the message (default: fix the value in the file).

    Returns
    -------
    FileSchema
        The validated values.
    """
    if not isinstance(data, dict):
        raise error(f"{source}: expected a JSON object at the top level, got "
                    f"{type(data).__name__}; {hint or 'check that this is the right file'}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first.get("loc", ()))
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        where = where.lstrip(".") or "(top level)"
        what = _description(schema, loc)
        message = first.get("msg", "invalid value")
        if first.get("type") == "finite_number" or "finite" in message:
            message = "Input should be a finite number"
        got = "" if first.get("type") == "missing" else f", got {_short(first.get('input'))}"
        raise error(f"{source}: field {where}{f' ({what})' if what else ''}: {message}{got}; "
                    f"{hint or 'fix the value in the file'}") from None
