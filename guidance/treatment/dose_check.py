"""Is the dose of the applicator where it stands acceptable? Coverage, organ limits, hot spot.

Plain logic (no Qt) behind the OR monitor's light and *Confirm*: a pose close to the plan is
not enough, the dose it gives must also cover the target and spare the organs. The limits
are data (:class:`PlanLimits`): the shipped defaults ``assets/plan_limits.json`` are
*published* numbers (AAPM TG-101 single-fraction organ limits, a common electron IORT
coverage convention), labelled as such in the file's ``provenance``; a plan or case overrides
them with its own ``"limits"`` entry of the same form.

Rules of :func:`check_dose` (each failed rule gives one reason on screen):

* target V90 (volume inside 90 % of the reference dose) ``>= v90_green_percent`` and D90
  ``>= d90_green_percent_of_rx`` of the prescription: green; below, amber; below the
  ``*_red_*`` values: red;
* an organ with a limit whose Dmax exceeds it, or (``v90_max_percent``) whose share inside
  the prescription isodose exceeds it: red;
* the dose maximum above ``hot_spot.amber_percent_of_rx`` of the prescription: amber, above
  ``red_percent_of_rx``: red (e.g. backscatter upstream of a lead shielding disc);
* monitor units from an output factor that is not measured (``mu_estimated``): amber.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guidance.treatment.plan_check import Light, worst_light
from models.base.errors import InputError
from models.base.files import read_json_file

#: The shipped default limits (published numbers, see the file's ``provenance``).
DEFAULT_LIMITS_ASSET = ("plan_limits.json",)


@dataclass(frozen=True)
class OrganLimit:
    """Maximum dose (Gy) an organ at risk may receive, and where the number comes from.

    ``v90_max_percent`` (optional) limits the share of the organ inside the prescription
    isodose (its V90, %), e.g. the tissue under a shallow tumour bed.
    """

    name: str
    dmax_gy: float = math.inf
    source: str = ""
    v90_max_percent: float | None = None


@dataclass(frozen=True)
class PlanLimits:
    """Acceptance thresholds of a plan's dose (see the module docstring)."""

    v90_green_percent: float = 95.0
    v90_red_percent: float = 90.0
    d90_green_percent_of_rx: float = 100.0
    d90_red_percent_of_rx: float = 90.0
    hot_spot_amber_percent_of_rx: float = 120.0
    hot_spot_red_percent_of_rx: float = 140.0
    organs: tuple[OrganLimit, ...] = ()
    provenance: str = ""

    def __post_init__(self) -> None:
        pairs = (("v90_red_percent", "v90_green_percent"),
                 ("d90_red_percent_of_rx", "d90_green_percent_of_rx"),
                 ("hot_spot_amber_percent_of_rx", "hot_spot_red_percent_of_rx"))
        for low, high in pairs:
            a, b = getattr(self, low), getattr(self, high)
            if not (math.isfinite(a) and math.isfinite(b) and 0.0 <= a <= b):
                raise InputError(f"plan limits: {low} ({a}) must be >= 0 and not above "
                                 f"{high} ({b})")

    def organ(self, name: str) -> OrganLimit | None:
        return next((o for o in self.organs if o.name == name), None)

    def with_overrides(self, data: Mapping[str, Any] | None, *, what: str) -> PlanLimits:
        """These limits with the entries of a plan's or case's ``"limits"`` dict replaced."""
        if not data:
            return self
        return _limits_from_dict(data, what=what, base=self)


#: Largest percentage or dose (Gy) a limit may hold: anything above is a typing error.
MAX_LIMIT_VALUE = 1000.0


def _number(section: Mapping[str, Any], key: str, default: float, what: str) -> float:
    """``section[key]`` as a finite number in [0, MAX_LIMIT_VALUE] (``default`` if absent).

    Strict: ``true``, ``"95"``, NaN and huge values are refused, not converted.
    """
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or not 0.0 <= value <= MAX_LIMIT_VALUE:
        raise InputError(f"{what}: {key} must be a number from 0 to {MAX_LIMIT_VALUE:g}, "
                         f"got {value!r}; fix the value in the file")
    return float(value)


def _section(data: Mapping[str, Any], key: str, what: str) -> Mapping[str, Any]:
    """``data[key]`` as an object (absent or null: empty)."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{what}: {key} must be a JSON object, got {value!r}; see "
                         "assets/plan_limits.json for the form")
    return value


def _limits_from_dict(data: Mapping[str, Any], *, what: str,
                      base: PlanLimits | None = None) -> PlanLimits:
    """Read the ``plan_limits.json`` form (``target``, ``hot_spot``, ``organs``)."""
    base = base or PlanLimits()
    if not isinstance(data, Mapping):
        raise InputError(f"{what}: limits must be a JSON object with target/hot_spot/organs")
    target = _section(data, "target", what)
    hot = _section(data, "hot_spot", what)
    organs = {o.name: o for o in base.organs}
    for name, entry in _section(data, "organs", what).items():
        if not isinstance(entry, Mapping) or not ({"dmax_gy", "v90_max_percent"} & set(entry)):
            raise InputError(f"{what}: organ {name!r} needs {{\"dmax_gy\": number}} "
                             "and/or {\"v90_max_percent\": number}")
        before = organs.get(str(name), OrganLimit(str(name)))
        dmax_gy = _number(entry, "dmax_gy", 0.0, what) if "dmax_gy" in entry \
            else before.dmax_gy   # (no Dmax limit: infinite)
        if dmax_gy <= 0.0:
            raise InputError(f"{what}: organ {name!r} dmax_gy must be above 0 Gy, got "
                             f"{dmax_gy:g}")
        v90_max = entry.get("v90_max_percent")
        organs[str(name)] = OrganLimit(
            str(name), dmax_gy, str(entry.get("source", before.source)),
            before.v90_max_percent if v90_max is None
            else _number(entry, "v90_max_percent", 0.0, what))
    try:
        return PlanLimits(
            v90_green_percent=_number(target, "v90_green_percent", base.v90_green_percent,
                                      what),
            v90_red_percent=_number(target, "v90_red_percent", base.v90_red_percent, what),
            d90_green_percent_of_rx=_number(target, "d90_green_percent_of_rx",
                                            base.d90_green_percent_of_rx, what),
            d90_red_percent_of_rx=_number(target, "d90_red_percent_of_rx",
                                          base.d90_red_percent_of_rx, what),
            hot_spot_amber_percent_of_rx=_number(hot, "amber_percent_of_rx",
                                                 base.hot_spot_amber_percent_of_rx, what),
            hot_spot_red_percent_of_rx=_number(hot, "red_percent_of_rx",
                                               base.hot_spot_red_percent_of_rx, what),
            organs=tuple(organs.values()),
            provenance=str(data.get("provenance", base.provenance)))
    except InputError as exc:   # the pairs' order: name the file too
        raise InputError(f"{what}: {exc}") from None


def load_plan_limits(path: str | Path | None = None) -> PlanLimits:
    """Limits from a ``plan_limits.json``-form file (default: the shipped published defaults).

    Raises
    ------
    InputError
        Unreadable file or a value of the wrong type (the message names the file).
    """
    if path is None:
        from assets import asset_path

        path = asset_path(*DEFAULT_LIMITS_ASSET)
    data = read_json_file(path, what="plan limits file")
    return _limits_from_dict(data, what=f"plan limits {path}")


@dataclass(frozen=True)
class DoseCheck:
    """Verdict on one dose: the light it allows and every reason it is not green."""

    light: Light
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.light is Light.GREEN


def _grade(value: float, green: float, red: float) -> Light:
    if value >= green:
        return Light.GREEN
    return Light.YELLOW if value >= red else Light.RED


def _hot_organ(metrics: Mapping[str, object], prescription_gy: float,
               limits: PlanLimits) -> str:
    """`` in PANCREAS (Dmax 156 %)``: the structure with the highest Dmax over the hot-spot
    limit, '' when none is (the maximum lies outside every structure)."""
    dmax = {name: 100.0 * float(getattr(m, "dmax_gy", 0.0)) / prescription_gy
            for name, m in metrics.items()}
    hot = {name: pct for name, pct in dmax.items()
           if pct > limits.hot_spot_amber_percent_of_rx}
    if not hot:
        return ""
    name = max(hot, key=hot.get)
    return f" in {name} (Dmax {hot[name]:.0f} %)"


def check_dose(metrics: Mapping[str, object], *, target: str, prescription_gy: float,
               dose_max_gy: float, limits: PlanLimits, mu_estimated: bool = False,
               disc: str = "none") -> DoseCheck:
    """Judge a dose by its DVH metrics against ``limits`` (rules in the module docstring).

    Parameters
    ----------
    metrics : mapping name -> DoseMetrics
        Per-structure metrics (Gy, %) of the dose, with the prescription given.
    target : str
        The target structure; missing from ``metrics`` counts as 0 % covered.
    prescription_gy : float
        Prescribed dose (Gy) at the prescription isodose.
    dose_max_gy : float
        Maximum of the dose grid (Gy).
    limits : PlanLimits
    mu_estimated : bool
        The monitor units rest on an output factor that is not measured.
    disc : str
        Shielding disc material ('none' without), named in a hot-spot reason.

    Examples
    --------
    >>> check_dose({}, target="CTV", prescription_gy=10.0, dose_max_gy=11.0,
    ...            limits=PlanLimits()).reasons[0]
    'CTV not in the dose: V90 0.0 % (need >= 95 %)'
    """
    lights, reasons = [Light.GREEN], []
    m = metrics.get(target)
    v90 = float(getattr(m, "v90_percent", 0.0)) if m is not None else 0.0
    d90 = float(getattr(m, "d90_gy", 0.0)) if m is not None else 0.0
    if m is None:
        lights.append(Light.RED)
        reasons.append(f"{target} not in the dose: V90 0.0 % "
                       f"(need >= {limits.v90_green_percent:g} %)")
    else:
        v90_light = _grade(v90, limits.v90_green_percent, limits.v90_red_percent)
        if v90_light is not Light.GREEN:
            lights.append(v90_light)
            reasons.append(f"{target} V90 {v90:.1f} % (need >= {limits.v90_green_percent:g} %)")
        d90_pct = 100.0 * d90 / prescription_gy
        d90_light = _grade(d90_pct, limits.d90_green_percent_of_rx - 1e-9,
                           limits.d90_red_percent_of_rx)
        if d90_light is not Light.GREEN:
            lights.append(d90_light)
            need = prescription_gy * limits.d90_green_percent_of_rx / 100.0
            reasons.append(f"{target} D90 {d90:.2f} Gy (need >= {need:.2f} Gy)")
    for name, organ_metrics in metrics.items():
        limit = limits.organ(name)
        dmax = float(getattr(organ_metrics, "dmax_gy", 0.0))
        if limit is not None and dmax > limit.dmax_gy:
            lights.append(Light.RED)
            reasons.append(f"{name} Dmax {dmax:.1f} Gy over limit {limit.dmax_gy:g} Gy")
        v90 = float(getattr(organ_metrics, "v90_percent", 0.0))
        if limit is not None and limit.v90_max_percent is not None \
                and v90 > limit.v90_max_percent:
            lights.append(Light.RED)
            reasons.append(f"{name} V90 {v90:.1f} % over limit {limit.v90_max_percent:g} %")
    hot_pct = 100.0 * dose_max_gy / prescription_gy
    if hot_pct > limits.hot_spot_amber_percent_of_rx:
        lights.append(Light.RED if hot_pct > limits.hot_spot_red_percent_of_rx
                      else Light.YELLOW)
        cause = f" ({disc} disc backscatter?)" if disc != "none" else ""
        where = _hot_organ(metrics, prescription_gy, limits)
        reasons.append(f"hot spot {hot_pct:.1f} % of Rx{where} "
                       f"(limit {limits.hot_spot_amber_percent_of_rx:g} %){cause}")
    if mu_estimated:
        lights.append(Light.YELLOW)
        reasons.append("MU ESTIMATED: output factor not measured")
    return DoseCheck(worst_light(lights), tuple(reasons))
