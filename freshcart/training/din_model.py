"""The attention model, in the spirit of the Deep Interest Network (Zhou et al., KDD 2018).

The candidate product and each of the user's last ``spec.RECENT_ITEMS`` products
are embedded (product embedding + category embedding). A small network scores
every recent item against the candidate (inputs: both vectors, their difference
and product), so the attention weights depend on the candidate; the weighted sum
of the recent items (unnormalised, as in DIN, so the amount of matching history
counts) is the user's interest in this candidate. It goes, with the candidate's
vector and the standardised tabular features, into an MLP that outputs the
purchase log-odds.

Ids are coded with vocabularies learnt from the training rows: 0 is padding and
1 is "unknown", the embedding a cold-start product or category gets.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from freshcart.features import spec
from freshcart.training.data import SEQUENCE_CATEGORIES, SEQUENCE_PRODUCTS, id_array, sequence_matrix, tabular_matrix

PADDING, UNKNOWN = 0, 1


@dataclass(frozen=True)
class DINParams:
    """Hyper-parameters of the attention model."""

    product_dim: int = 16
    category_dim: int = 8
    attention_hidden: int = 32
    hidden: tuple[int, ...] = (128, 64)
    batch_size: int = 2048
    learning_rate: float = 2e-3
    weight_decay: float = 1e-6
    max_epochs: int = 8
    patience: int = 2
    min_product_count: int = 2
    """Products seen fewer times in the training rows share the 'unknown' embedding."""
    seed: int = 42
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda'."""
    threads: int = 0
    """CPU threads of torch while training; 0 leaves torch's default (every core)."""


class Vocabulary:
    """Codes of ids: 0 padding, 1 unknown, 2.. the ids seen at least ``min_count`` times."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = np.sort(np.asarray(ids, dtype=np.int64))

    @classmethod
    def fit(cls, *columns: np.ndarray, min_count: int = 1) -> Vocabulary:
        """The ids of ``columns`` (0 and negatives are padding) seen at least ``min_count`` times."""
        values = np.concatenate([c.ravel() for c in columns])
        values, counts = np.unique(values[values > 0], return_counts=True)
        return cls(values[counts >= min_count])

    def __len__(self) -> int:
        return int(self.ids.shape[0]) + 2

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Codes of ``values`` (any shape): padding for ids <= 0, unknown for ids not in the vocabulary."""
        flat = np.asarray(values, dtype=np.int64).ravel()
        position = np.searchsorted(self.ids, flat)
        inside = position < self.ids.shape[0]
        known = inside & (self.ids[np.minimum(position, max(self.ids.shape[0] - 1, 0))] == flat) \
            if self.ids.shape[0] else np.zeros_like(inside)
        codes = np.where(known, position + 2, UNKNOWN)
        codes[flat <= 0] = PADDING
        return codes.reshape(np.shape(values)).astype(np.int64)


@dataclass
class Standardizer:
    """``sign(x) * log1p(|x|)``, then centred and scaled with the training rows' statistics; NaN -> 0."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, matrix: np.ndarray) -> Standardizer:
        squashed = np.sign(matrix) * np.log1p(np.abs(matrix))
        mean = np.nan_to_num(np.nanmean(squashed, axis=0))
        scale = np.nan_to_num(np.nanstd(squashed, axis=0), nan=1.0)
        return cls(mean.astype(np.float32), np.where(scale > 1e-6, scale, 1.0).astype(np.float32))

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """Standardised values plus one 0/1 column per feature saying whether it was missing."""
        squashed = np.sign(matrix) * np.log1p(np.abs(matrix))
        missing = np.isnan(squashed)
        values = np.where(missing, 0.0, (squashed - self.mean) / self.scale)
        return np.concatenate([values, missing], axis=1).astype(np.float32)


@dataclass
class DINInputs:
    """Encoded model inputs of a set of rows (compact: int64 codes and float32 features)."""

    product: np.ndarray
    category: np.ndarray
    seq_products: np.ndarray
    seq_categories: np.ndarray
    tabular: np.ndarray

    def __len__(self) -> int:
        return int(self.product.shape[0])

    def batch(self, index: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The rows ``index`` as tensors on ``device`` (only this batch is copied)."""
        return tuple(torch.from_numpy(np.ascontiguousarray(a[index])).to(device, non_blocking=True)
                     for a in (self.product, self.category, self.seq_products, self.seq_categories, self.tabular))


@dataclass
class Encoder:
    """Everything that turns rows into :class:`DINInputs`: the vocabularies and the standardiser."""

    products: Vocabulary
    categories: Vocabulary
    standardizer: Standardizer
    feature_names: list[str]

    @classmethod
    def fit(cls, table: pa.Table, min_product_count: int) -> Encoder:
        """Learn the vocabularies and the feature statistics from the training rows."""
        matrix, names = tabular_matrix(table)
        products = Vocabulary.fit(id_array(table["product_id"]), sequence_matrix(table[SEQUENCE_PRODUCTS]),
                                  min_count=min_product_count)
        categories = Vocabulary.fit(id_array(table["category_id"]), sequence_matrix(table[SEQUENCE_CATEGORIES]))
        return cls(products, categories, Standardizer.fit(matrix), names)

    def encode(self, table: pa.Table) -> DINInputs:
        """The rows of ``table`` as model inputs."""
        matrix, _ = tabular_matrix(table)
        return DINInputs(
            product=self.products.encode(id_array(table["product_id"])),
            category=self.categories.encode(id_array(table["category_id"])),
            seq_products=self.products.encode(sequence_matrix(table[SEQUENCE_PRODUCTS])),
            seq_categories=self.categories.encode(sequence_matrix(table[SEQUENCE_CATEGORIES])),
            tabular=self.standardizer.transform(matrix),
        )

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to save beside the network weights."""
        return {"product_ids": self.products.ids, "category_ids": self.categories.ids,
                "mean": self.standardizer.mean, "scale": self.standardizer.scale}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], feature_names: list[str]) -> Encoder:
        return cls(Vocabulary(state["product_ids"]), Vocabulary(state["category_ids"]),
                   Standardizer(state["mean"], state["scale"]), feature_names)


class DeepInterestNetwork(nn.Module):
    """Candidate-aware attention over the recent items plus tabular features -> purchase log-odds."""

    def __init__(self, n_products: int, n_categories: int, n_tabular: int, params: DINParams) -> None:
        super().__init__()
        self.product_embedding = nn.Embedding(n_products, params.product_dim, padding_idx=PADDING)
        self.category_embedding = nn.Embedding(n_categories, params.category_dim, padding_idx=PADDING)
        item = params.product_dim + params.category_dim
        self.attention = nn.Sequential(nn.Linear(4 * item, params.attention_hidden), nn.PReLU(),
                                       nn.Linear(params.attention_hidden, 1))
        layers: list[nn.Module] = []
        width = 2 * item + n_tabular
        for size in params.hidden:
            layers += [nn.Linear(width, size), nn.PReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)

    def item(self, products: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.product_embedding(products), self.category_embedding(categories)], dim=-1)

    def attend(self, product: torch.Tensor, category: torch.Tensor, seq_products: torch.Tensor,
               seq_categories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Candidate vector, interest vector and the attention weight of each recent item (0 on padding)."""
        query = self.item(product, category)
        keys = self.item(seq_products, seq_categories)
        expanded = query.unsqueeze(1).expand_as(keys)
        scores = self.attention(torch.cat([expanded, keys, expanded - keys, expanded * keys], dim=-1)).squeeze(-1)
        weights = scores * (seq_products != PADDING).float()
        interest = (weights.unsqueeze(-1) * keys).sum(dim=1)
        return query, interest, weights

    def forward(self, product: torch.Tensor, category: torch.Tensor, seq_products: torch.Tensor,
                seq_categories: torch.Tensor, tabular: torch.Tensor) -> torch.Tensor:
        query, interest, _ = self.attend(product, category, seq_products, seq_categories)
        return self.head(torch.cat([query, interest, tabular], dim=-1)).squeeze(-1)


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when requested or (for 'auto') available, else the CPU; asking for CUDA without one is an error."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {requested!r}: use auto, cpu or cuda (FRESHCART_DIN_DEVICE)")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use auto or cpu "
                         "(FRESHCART_DIN_DEVICE)")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


@dataclass
class DINModel:
    """A trained network with its encoder; scores rows of a training set."""

    network: DeepInterestNetwork
    encoder: Encoder
    params: DINParams
    device: torch.device

    @torch.no_grad()
    def predict_inputs(self, inputs: DINInputs, batch_size: int = 8192) -> np.ndarray:
        """Purchase probabilities of encoded rows."""
        self.network.eval()
        out = np.empty(len(inputs), dtype=np.float64)
        for begin in range(0, len(inputs), batch_size):
            index = np.arange(begin, min(begin + batch_size, len(inputs)))
            out[index] = torch.sigmoid(self.network(*inputs.batch(index, self.device))).double().cpu().numpy()
        return out

    def predict(self, table: pa.Table) -> np.ndarray:
        """Purchase probabilities of training-set rows (or model inputs with the same columns)."""
        return self.predict_inputs(self.encoder.encode(table))

    def save(self, folder: Path) -> Path:
        """Write the weights, the encoder and the parameters under ``folder``; returns the folder."""
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.cpu() for k, v in self.network.state_dict().items()}, folder / "network.pt")
        np.savez(folder / "encoder.npz", **self.encoder.state())
        meta = {"params": asdict(self.params), "feature_names": self.encoder.feature_names}
        (folder / "din.json").write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: Path, device: str = "auto") -> DINModel:
        """Read a model written by :meth:`save`, onto ``device`` ('auto': CUDA when available)."""
        meta = json.loads((folder / "din.json").read_text())
        params = DINParams(**{**meta["params"], "hidden": tuple(meta["params"]["hidden"]), "device": device})
        with np.load(folder / "encoder.npz") as arrays:
            encoder = Encoder.from_state(dict(arrays), meta["feature_names"])
        target = pick_device(device)
        network = DeepInterestNetwork(len(encoder.products), len(encoder.categories),
                                      2 * len(encoder.feature_names), params)
        network.load_state_dict(torch.load(folder / "network.pt", map_location="cpu", weights_only=True))
        return cls(network.to(target), encoder, params, target)

    @torch.no_grad()
    def attention_weights(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """The recent-product ids (right-aligned, 0 = padding) and their attention weights for each row."""
        self.network.eval()
        inputs = self.encoder.encode(table)
        index = np.arange(len(inputs))
        product, category, seq_p, seq_c, _ = inputs.batch(index, self.device)
        _, _, weights = self.network.attend(product, category, seq_p, seq_c)
        return sequence_matrix(table[SEQUENCE_PRODUCTS], spec.RECENT_ITEMS), weights.cpu().numpy()
