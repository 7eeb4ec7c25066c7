"""What to simulate: the size of the world, the time span, the traffic volume and drift.

Both dataclasses are frozen and validated on creation; a bad value raises
:class:`SimulationConfigError` naming the field, the value and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from freshcart.simulator.vocab import CATEGORY_MEDIANS

MAX_CATEGORIES = 10 * len(CATEGORY_MEDIANS)
MAX_HORIZON_HOURS = 24 * 30


class SimulationConfigError(ValueError):
    """A simulation setting has a bad value; the message names it and says what to do."""


def _fail(name: str, value: Any, problem: str, fix: str) -> SimulationConfigError:
    return SimulationConfigError(f"simulation config: {name}={value!r} {problem}; {fix}")


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, value, "is not an integer", f"give a whole number >= {low}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise _fail(name, value, "is out of range", f"give a value {bound}")


def _check_float(name: str, value: Any, low: float, high: float, *, open_high: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise _fail(name, value, "is not a number", f"give a number between {low} and {high}")
    if value < low or value > high or (open_high and value == high):
        bracket = ")" if open_high else "]"
        raise _fail(name, value, "is out of range", f"give a number in [{low}, {high}{bracket}")


def _check_utc(name: str, value: Any) -> None:
    if not isinstance(value, datetime):
        raise _fail(name, value, "is not a datetime", "give a timezone-aware UTC datetime")
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        raise _fail(
            name, value, "is not in UTC", "give a timezone-aware datetime with tzinfo=timezone.utc"
        )


@dataclass(frozen=True)
class DriftConfig:
    """Changes applied to traffic at or after ``drift_from``; all off by default."""

    drift_from: datetime | None = None
    """UTC time from which drift applies (to sessions starting, and prices shown, at or after it)."""
    price_inflation: float = 0.0
    """Relative price change, e.g. 0.2 = every price +20% (-0.9 .. 10)."""
    category_shift: float = 0.0
    """Share of sessions (0..1) that browse a shifted category mix instead of the user's own."""
    new_products: int = 0
    """Products that appear at ``drift_from`` with new ids and take a large share of episodes."""
    bot_share: float = 0.0
    """Share of sessions (0..1) that are bots: dense views, never a cart or a purchase."""

    def __post_init__(self) -> None:
        _check_float("drift.price_inflation", self.price_inflation, -0.9, 10.0)
        _check_float("drift.category_shift", self.category_shift, 0.0, 1.0)
        _check_int("drift.new_products", self.new_products, 0, 1_000_000)
        _check_float("drift.bot_share", self.bot_share, 0.0, 1.0, open_high=True)
        if self.drift_from is not None:
            _check_utc("drift.drift_from", self.drift_from)
        elif self.any_knob:
            raise _fail(
                "drift.drift_from", None, "is not set but a drift knob is",
                "set drift_from to the UTC time the drift starts, or turn the knobs off",
            )

    @property
    def any_knob(self) -> bool:
        """Whether any drift knob is turned on."""
        return bool(self.price_inflation or self.category_shift or self.new_products or self.bot_share)

    @property
    def active(self) -> bool:
        """Whether drift changes anything at all."""
        return self.drift_from is not None and self.any_knob


@dataclass(frozen=True)
class SimulationConfig:
    """One simulation run; the same config always produces byte-identical data."""

    seed: int
    """Root of all randomness (0 .. 2**63-1)."""
    users: int = 10_000
    """Number of (human) shoppers."""
    products: int = 5_000
    """Catalogue size before drift (at least one product per category)."""
    categories: int = 40
    """Number of leaf categories."""
    days: int = 7
    """Number of simulated days; sessions start within them (later events spill over)."""
    start: datetime = datetime(2025, 1, 6, tzinfo=timezone.utc)
    """UTC midnight of the first simulated day."""
    events_per_day: int = 200_000
    """Expected events per day; the session count per day is derived from it."""
    horizon_hours: float = 24
    """Purchase horizon H of the ground truth: P(purchase within H after a view)."""
    drift: DriftConfig = field(default_factory=DriftConfig)
    """Drift knobs (off by default)."""

    def __post_init__(self) -> None:
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("users", self.users, 1, 50_000_000)
        _check_int("categories", self.categories, 1, MAX_CATEGORIES)
        _check_int("products", self.products, 1, 100_000_000)
        if self.products < self.categories:
            raise _fail(
                "products", self.products, f"is below categories={self.categories}",
                "give at least one product per category (raise products or lower categories)",
            )
        _check_int("days", self.days, 1, 3660)
        _check_int("events_per_day", self.events_per_day, 1, 1_000_000_000)
        _check_float("horizon_hours", self.horizon_hours, 1.0, MAX_HORIZON_HOURS)
        _check_utc("start", self.start)
        if self.start.time() != datetime.min.time():
            raise _fail("start", self.start, "is not a UTC midnight", "give a datetime at 00:00 UTC")
        if not isinstance(self.drift, DriftConfig):
            raise _fail("drift", self.drift, "is not a DriftConfig", "pass DriftConfig(...)")

    @property
    def end(self) -> datetime:
        """The end (exclusive) of the days in which sessions start."""
        return self.start + timedelta(days=self.days)
