"""Training the attention model: seeded mini-batch Adam, early stopping on the validation set.

Rows are encoded once into compact arrays (int64 id codes, float32 features);
every step gathers one shuffled mini-batch and copies only that batch to the
device, so GPU memory holds the network and one batch. The weights of the epoch
with the best validation log loss are kept.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from freshcart.training.din_model import DeepInterestNetwork, DINInputs, DINModel, DINParams, Encoder, pick_device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA), and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class DINTrainingLog:
    """What happened while training: per-epoch losses, times and the epoch kept."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0
    device: str = "cpu"


@dataclass(frozen=True)
class EpochReport:
    """One finished epoch: its speed, its losses and where early stopping stands."""

    epoch: int
    max_epochs: int
    rows_per_second: float
    train_loss: float
    validation_loss: float
    best_epoch: int
    epochs_without_improvement: int
    patience: int

    @property
    def stopping(self) -> bool:
        """True when this epoch ends training early (``patience`` epochs without improvement)."""
        return self.epochs_without_improvement >= self.patience

    def line(self) -> str:
        """``epoch 2/6: 41,200 rows/s, train loss 0.1234, validation loss 0.1301 (best: epoch 2), ...``."""
        state = ("improved" if self.best_epoch == self.epoch else
                 f"{self.epochs_without_improvement}/{self.patience} epochs without improvement"
                 + (", stopping early" if self.stopping else ""))
        return (f"epoch {self.epoch}/{self.max_epochs}: {self.rows_per_second:,.0f} rows/s, train loss "
                f"{self.train_loss:.4f}, validation loss {self.validation_loss:.4f} (best: epoch {self.best_epoch}), "
                f"{state}")


MIN_STEPS_PER_EPOCH = 64
log = logging.getLogger(__name__)


def effective_batch_size(batch_size: int, rows: int) -> int:
    """The configured batch size, made smaller for small training sets so an epoch has at least
    :data:`MIN_STEPS_PER_EPOCH` steps (never below 64 rows)."""
    return max(64, min(batch_size, rows // MIN_STEPS_PER_EPOCH))


def _log_loss(model: DINModel, inputs: DINInputs, labels: np.ndarray) -> float:
    p = np.clip(model.predict_inputs(inputs), 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def train_din(train: pa.Table, validation: pa.Table, params: DINParams,
              progress: Callable[[int, int, str], None] | None = None,
              on_epoch: Callable[[EpochReport], None] | None = None) -> tuple[DINModel, DINTrainingLog]:
    """Fit the network on ``train``; stop when the validation log loss has not improved for ``patience`` epochs.

    ``progress(step, total_steps, description)`` is called after every mini-batch (the description
    carries the last epoch's summary), ``on_epoch(report)`` after every epoch, and every epoch is
    logged at INFO (what a DAG task's log shows).
    """
    seed_everything(params.seed)
    if params.threads:
        torch.set_num_threads(params.threads)
    device = pick_device(params.device)
    encoder = Encoder.fit(train, params.min_product_count)
    train_inputs, val_inputs = encoder.encode(train), encoder.encode(validation)
    train_y = train["label"].to_numpy().astype(np.float32)
    val_y = validation["label"].to_numpy().astype(np.float64)
    network = DeepInterestNetwork(len(encoder.products), len(encoder.categories),
                                  train_inputs.tabular.shape[1], params).to(device)
    model = DINModel(network, encoder, params, device)
    optimizer = torch.optim.Adam(network.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = np.random.default_rng(params.seed)
    batch_size = effective_batch_size(params.batch_size, len(train_inputs))
    steps_per_epoch = max(1, -(-len(train_inputs) // batch_size))
    history = DINTrainingLog(device=str(device))
    last = ""
    best_state, best_loss, stale = copy.deepcopy(network.state_dict()), float("inf"), 0
    for epoch in range(params.max_epochs):
        started = time.perf_counter()
        network.train()
        order = generator.permutation(len(train_inputs))
        total = 0.0
        for step in range(steps_per_epoch):
            index = order[step * batch_size:(step + 1) * batch_size]
            *features, = train_inputs.batch(index, device)
            target = torch.from_numpy(train_y[index]).to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(network(*features), target)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
            if progress is not None:
                progress(epoch * steps_per_epoch + step + 1, params.max_epochs * steps_per_epoch,
                         f"epoch {epoch + 1}/{params.max_epochs}{last}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        history.epoch_seconds.append(time.perf_counter() - started)
        history.train_loss.append(total / len(train_inputs))
        history.validation_loss.append(_log_loss(model, val_inputs, val_y))
        if history.validation_loss[-1] < best_loss - 1e-6:
            best_loss, stale, history.best_epoch = history.validation_loss[-1], 0, epoch + 1
            best_state = copy.deepcopy(network.state_dict())
        else:
            stale += 1
        report = EpochReport(epoch + 1, params.max_epochs, len(train_inputs) / history.epoch_seconds[-1],
                             history.train_loss[-1], history.validation_loss[-1], history.best_epoch, stale,
                             params.patience)
        log.info("attention model %s", report.line())
        if on_epoch is not None:
            on_epoch(report)
        last = f" (last: {report.rows_per_second:,.0f} rows/s, validation loss {report.validation_loss:.4f})"
        if report.stopping:
            break
    network.load_state_dict(best_state)
    return model, history
