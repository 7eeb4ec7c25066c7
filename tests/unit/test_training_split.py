"""The split by time: whole days when the rows span enough of them, quantiles otherwise."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

from freshcart.training.data import TrainingDataError, split_by_time
from freshcart.training.train import split_table

DAY0 = datetime(2026, 3, 2, tzinfo=timezone.utc)


def views(days: float, per_day: int = 240, first_hour: float = 7.5) -> pa.Table:
    """Views every ``24 / per_day`` hours from ``first_hour`` on day 0, labels alternating 0/1."""
    steps = int(days * per_day)
    times = [DAY0 + timedelta(hours=first_hour + 24 * i / per_day) for i in range(steps)]
    return pa.table({"event_time": pa.array(times, pa.timestamp("us", tz="UTC")),
                     "label": pa.array(np.arange(steps) % 2, pa.int64())})


def is_midnight(moment: datetime) -> bool:
    return moment.utcoffset() == timedelta(0) and (moment.hour, moment.minute, moment.second,
                                                   moment.microsecond) == (0, 0, 0, 0)


def test_twenty_days_split_on_midnights_into_whole_days() -> None:
    table = views(20, first_hour=0)
    split = split_by_time(table, 0.15, 0.15)
    assert is_midnight(split.validation_start) and is_midnight(split.holdout_start)
    assert split.holdout_start == DAY0 + timedelta(days=17)  # round(20 * 0.15) = 3 days
    assert split.validation_start == DAY0 + timedelta(days=14)
    train, validation, holdout = split_table(table, split)
    assert (train.num_rows, validation.num_rows, holdout.num_rows) == (14 * 240, 3 * 240, 3 * 240)


def test_a_span_starting_mid_day_counts_its_first_day() -> None:
    table = views(4.6, first_hour=13)  # day 0 13:00 .. day 5 ~03:30: six calendar days
    split = split_by_time(table, 0.15, 0.15)
    assert split.holdout_start == DAY0 + timedelta(days=5)  # round(6 * 0.15) = 1 day
    assert split.validation_start == DAY0 + timedelta(days=4)
    assert is_midnight(split.validation_start) and is_midnight(split.holdout_start)


def test_five_days_give_one_day_of_validation_and_one_of_holdout() -> None:
    split = split_by_time(views(5, first_hour=0), 0.15, 0.15)
    assert (split.validation_start, split.holdout_start) == (DAY0 + timedelta(days=3), DAY0 + timedelta(days=4))


def test_too_few_days_for_whole_days_cut_at_quantiles() -> None:
    table = views(2, first_hour=0)  # round(2 * 0.15) = 0 days: no whole day for the holdout
    split = split_by_time(table, 0.15, 0.15)
    train, validation, holdout = split_table(table, split)
    assert not is_midnight(split.holdout_start)
    assert holdout.num_rows == pytest.approx(0.15 * table.num_rows, abs=1)
    assert validation.num_rows == pytest.approx(0.15 * table.num_rows, abs=1)


def test_a_part_without_positives_is_named() -> None:
    table = views(20, first_hour=0)
    labels = np.arange(table.num_rows) % 2
    labels[17 * 240:] = 0  # the holdout days have no purchase
    with pytest.raises(TrainingDataError, match="holdout part"):
        split_by_time(table.set_column(1, "label", pa.array(labels)), 0.15, 0.15)
