"""Benchmark: model training time and holdout quality on the default simulation.

Targets (brief): XGBoost (hist) trains on 1 M rows in <= 60 s on 2 cores; holdout AUC
within 0.02 of the observable ceiling (below). Simulates the default shop (seed 42, the
demo's) over ``--days`` days (4 weeks by default), builds the feature tables and the
training set of the views after the ``--warm-up`` days (whose events only feed the
features; the last day only completes the labels), splits it by time on whole days, then
prints

- XGBoost training seconds on exactly 1,000,000 training rows (drawn from the training
  part), median of ``--runs`` runs;
- DIN seconds per epoch on 1,000,000 rows on the CPU (and on CUDA when torch sees a GPU);
- validation and holdout AUC of both models (trained on the training part, early stopping
  on the validation part) against the popularity baseline and the oracle AUC;
- the observable ceiling: the holdout AUC of the simulator's own cart log-odds with
  every per-user, per-product and per-category latent known exactly, but without the
  per-visit intent and per-episode interest that the oracle also knows and that no
  event reveals before the view. No model of observable data can be expected to beat it;
  the XGBoost gap to it is printed beside its target.

    .venv/bin/python bench/bench_training.py                 # about 15 minutes on 2 cores
    .venv/bin/python bench/bench_training.py --runs 1 --din-epochs 1
    .venv/bin/python bench/bench_training.py --runs 1 --skip-din   # XGBoost only
    .venv/bin/python bench/bench_training.py --days 7 --warm-up 1  # the one-week shop of before
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from freshcart import storage  # noqa: E402
from freshcart.features.tables import build_feature_tables  # noqa: E402
from freshcart.settings import Settings, load_settings  # noqa: E402
from freshcart.simulator import SimulationConfig, build_world, write_simulation  # noqa: E402
from freshcart.simulator.funnel import cart_logit  # noqa: E402
from freshcart.simulator.oracle import roc_auc  # noqa: E402
from freshcart.training.data import load_or_build, split_by_time, tabular_matrix  # noqa: E402
from freshcart.training.din_train import train_din  # noqa: E402
from freshcart.training.evaluate import PopularityBaseline, evaluate_scores  # noqa: E402
from freshcart.training.train import din_params, split_table, xgboost_params  # noqa: E402
from freshcart.training.xgb_model import train_xgboost  # noqa: E402

MILLION = 1_000_000
CEILING_GAP_TARGET = 0.02


def observable_ceiling(config: SimulationConfig, rows: pa.Table) -> np.ndarray:
    """The true cart log-odds of each view without the hidden intent and interest (a ranking score)."""
    import pandas as pd

    world = build_world(config)
    user = pd.Series(np.arange(len(world.user_ids)), index=world.user_ids).reindex(rows["user_id"].to_numpy())
    product = pd.Series(np.arange(len(world.product_ids)), index=world.product_ids).reindex(
        rows["product_id"].to_numpy())
    if user.isna().any() or product.isna().any():
        raise ValueError("views of users or products the simulated world does not have")
    zero = np.zeros(rows.num_rows)  # no drift in the default shop: every price factor is 1
    return cart_logit(world, user.to_numpy(), product.to_numpy(), np.ones(rows.num_rows), zero, zero)


def build_data(settings: Settings, config: SimulationConfig, warm_up: int) -> pa.Table:
    """Simulate ``config``, build its feature tables and the training set of the days after the warm-up."""
    started = time.perf_counter()
    write_simulation(config, settings.offline_events_dir)
    days = storage.list_partitions(settings.offline_events_dir)
    build_feature_tables(settings, days[0], days[-1] + (days[1] - days[0]))
    table, _, _ = load_or_build(settings, days[warm_up], days[config.days - 1])
    print(f"default simulation (seed 42, {config.users:,} users, {config.days} days): training set "
          f"[{days[warm_up]}, {days[config.days - 1]}) of {table.num_rows:,} views ({warm_up} warm-up days) "
          f"in {time.perf_counter() - started:.0f}s")
    return table


def time_xgboost(settings: Settings, million: pa.Table, validation: pa.Table, runs: int) -> None:
    """XGBoost training seconds on exactly 1,000,000 rows, median of ``runs``."""
    x, names = tabular_matrix(million)
    vx, _ = tabular_matrix(validation)
    timings = []
    for run in range(runs):
        model = train_xgboost(x, million["label"].to_numpy(), vx, validation["label"].to_numpy(), names,
                              xgboost_params(settings))
        timings.append(model.train_seconds)
        print(f"  XGBoost run {run + 1}: {model.train_seconds:.1f}s, {model.best_iteration + 1} rounds kept")
    print(f"XGBoost (hist, {xgboost_params(settings).booster_params()['nthread']} threads) on 1,000,000 rows: "
          f"median {statistics.median(timings):.1f}s (target <= 60 s on 2 cores)")


def time_din(data_dir: Path, million: pa.Table, validation: pa.Table) -> None:
    """DIN seconds per epoch on 1,000,000 rows, on the CPU and on CUDA when torch sees a GPU."""
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    one_epoch = load_settings(data_dir=data_dir, din_max_epochs=1)
    for device in devices:
        params = din_params(one_epoch)
        params = type(params)(**{**params.__dict__, "device": device})
        _, log = train_din(million, validation.slice(0, 50_000), params)
        print(f"DIN on {device}: {log.epoch_seconds[0]:.1f}s per epoch of 1,000,000 rows "
              f"(batch {params.batch_size})")
    if len(devices) == 1:
        print("DIN on cuda: no GPU visible to torch on this machine")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="XGBoost timing runs (median)")
    parser.add_argument("--din-epochs", type=int, default=4, help="most epochs of the DIN quality run")
    parser.add_argument("--skip-din", action="store_true", help="leave the attention model out (quicker)")
    parser.add_argument("--days", type=int, default=28, help="simulated days (at least warm-up + 3)")
    parser.add_argument("--warm-up", type=int, default=None,
                        help="first days whose events only feed the features (default: a quarter of --days)")
    args = parser.parse_args(argv)
    warm_up = max(1, args.days // 4) if args.warm_up is None else args.warm_up
    if warm_up < 0 or args.days < warm_up + 3:
        parser.error(f"--days {args.days} --warm-up {warm_up}: simulate at least warm-up + 3 days (two days of "
                     "views to split, one more to complete their labels)")

    with tempfile.TemporaryDirectory(prefix="fc-bench-train-") as tmp:
        settings = load_settings(data_dir=Path(tmp), din_max_epochs=args.din_epochs)
        config = SimulationConfig(seed=42, days=args.days)
        table = build_data(settings, config, warm_up)
        split = split_by_time(table, settings.training_validation_share, settings.training_holdout_share)
        train, validation, holdout = split_table(table, split)
        print(f"split by time: train {train.num_rows:,}, validation {validation.num_rows:,} "
              f"(from {split.validation_start:%Y-%m-%d %H:%M}), holdout {holdout.num_rows:,} "
              f"(from {split.holdout_start:%Y-%m-%d %H:%M})")
        rng = np.random.default_rng(0)
        million = train.take(pa.array(np.sort(rng.choice(train.num_rows, MILLION, replace=True))))
        time_xgboost(settings, million, validation, args.runs)
        if not args.skip_din:
            time_din(Path(tmp), million, validation)

        baseline = PopularityBaseline.fit(train)
        x, names = tabular_matrix(train)
        vx, _ = tabular_matrix(validation)
        started = time.perf_counter()
        models = {"xgboost": train_xgboost(x, train["label"].to_numpy(), vx, validation["label"].to_numpy(),
                                           names, xgboost_params(settings))}
        print(f"XGBoost on the {train.num_rows:,} training rows: {time.perf_counter() - started:.0f}s, "
              f"{models['xgboost'].best_iteration + 1} rounds kept")
        din_log = None
        if not args.skip_din:
            models["din"], din_log = train_din(train, validation, din_params(settings))
        holdout_auc = {}
        for name, model in models.items():
            report = evaluate_scores(settings, holdout, model.predict(holdout), baseline)
            holdout_auc[name] = report.model["auc"]
            validation_auc = roc_auc(model.predict(validation), validation["label"].to_numpy())
            print(f"{name:8s} holdout AUC {report.model['auc']:.4f}  validation AUC {validation_auc:.4f}  "
                  f"oracle AUC {report.oracle_auc:.4f}  popularity AUC {report.baseline['auc']:.4f}  "
                  f"PR-AUC {report.model['pr_auc']:.4f}  NDCG@10 {report.model['ndcg_at_10']:.4f}")
        ceiling = roc_auc(observable_ceiling(config, holdout), holdout["label"].to_numpy())
        validation_ceiling = roc_auc(observable_ceiling(config, validation), validation["label"].to_numpy())
        print(f"observable ceiling AUC {ceiling:.4f} on the holdout, {validation_ceiling:.4f} on validation "
              f"(oracle AUC {report.oracle_auc:.4f}: the hidden per-visit intent and per-episode interest alone "
              f"are worth {report.oracle_auc - ceiling:.4f})")
        print(f"xgboost  gap to the observable ceiling {ceiling - holdout_auc['xgboost']:.4f} "
              f"(target <= {CEILING_GAP_TARGET})")
        if din_log is not None:
            print(f"  (DIN: {din_log.best_epoch} of {len(din_log.epoch_seconds)} epochs kept, "
                  f"{statistics.mean(din_log.epoch_seconds):.1f}s per epoch of {train.num_rows:,} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
