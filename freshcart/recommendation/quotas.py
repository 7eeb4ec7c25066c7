"""Per-source quotas of the candidate blend, chosen by the replay on a training period.

The blend is the service's (:func:`freshcart.serving.candidates.blend`): each source adds at most
its quota, then the list is filled in source order. :func:`search_quotas` looks for the quota
vector (in steps of ``unit`` candidates, summing to the list's length) with the highest candidate
recall (the share of queries whose product bought or carted is in the list): a steepest-ascent
walk that moves one step of quota from one source to another while that helps, from an even
split. The result is stored as shares of the list (:func:`save_quotas`: the JSON file the service
reads, and an MLflow run), so a list of 500 takes five times the quotas of a list of 100.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from freshcart.recommendation.candidate_replay import CandidateLists
from freshcart.serving.candidates import blend


@dataclass
class QuotaSearch:
    """The chosen quotas, their recall on the training queries, and what the search looked at."""

    limit: int
    quotas: dict[str, int]
    recall: float
    even_recall: float
    """Recall of the even split the search started from."""
    evaluated: int
    queries: int
    history: list[tuple[dict[str, int], float]] = field(default_factory=list)

    @property
    def shares(self) -> dict[str, float]:
        return {name: quota / self.limit for name, quota in self.quotas.items()}


def hits(lists: CandidateLists, quotas: dict[str, int] | None, limit: int) -> list[bool]:
    """Whether each query's target is among the ``limit`` candidates blended with ``quotas``."""
    out = []
    for target, proposals, exclude in zip(lists.targets, lists.proposals, lists.excluded):
        named = list(zip(lists.names, proposals))
        out.append(target in blend(named, limit, exclude, quotas, tag=False))
    return out


def blend_recall(lists: CandidateLists, quotas: dict[str, int] | None, limit: int) -> float:
    found = hits(lists, quotas, limit)
    return sum(found) / len(found) if found else float("nan")


def even_split(names: list[str], limit: int, unit: int) -> dict[str, int]:
    """``limit`` in steps of ``unit``, as evenly as possible, the earlier sources first."""
    steps, count = limit // unit, len(names)
    return {name: unit * (steps // count + (1 if i < steps % count else 0)) for i, name in enumerate(names)}


def search_quotas(lists: CandidateLists, limit: int = 100, unit: int = 5, max_rounds: int = 40) -> QuotaSearch:
    """The quota vector of highest blend recall found by moving ``unit`` between sources (see the module)."""
    if unit < 1 or limit % unit:
        raise ValueError(f"quota unit={unit} must be at least 1 and divide the list length {limit}")
    if len(lists) == 0:
        raise ValueError("no queries to choose the quotas on: the training period has no purchases or carts")
    seen: dict[tuple[int, ...], float] = {}
    names = lists.names

    def score(quotas: dict[str, int]) -> float:
        key = tuple(quotas[n] for n in names)
        if key not in seen:
            seen[key] = blend_recall(lists, quotas, limit)
        return seen[key]

    best = even_split(names, limit, unit)
    best_recall = even_recall = score(best)
    history = [(dict(best), best_recall)]
    for _ in range(max_rounds):
        moves = []
        for giver in names:
            if best[giver] < unit:
                continue
            for taker in names:
                if taker != giver:
                    trial = dict(best)
                    trial[giver] -= unit
                    trial[taker] += unit
                    moves.append((score(trial), [-trial[n] for n in names], trial))
        if not moves:
            break
        recall, _, trial = max(moves, key=lambda m: (m[0], m[1]))
        if recall <= best_recall:
            break
        best, best_recall = trial, recall
        history.append((dict(best), best_recall))
    return QuotaSearch(limit, best, best_recall, even_recall, len(seen), len(lists), history)


def contributions(lists: CandidateLists, quotas: dict[str, int], limit: int) -> dict[str, dict[str, float]]:
    """Per source: its own recall@limit alone, the share of queries whose target it added to the
    blend, and the blend's recall without it (the source left out, the others' quotas kept)."""
    added = {name: 0 for name in lists.names}
    for target, proposals, exclude in zip(lists.targets, lists.proposals, lists.excluded):
        found = blend(list(zip(lists.names, proposals)), limit, exclude, quotas)
        if target in found:
            added[found[target][0]] += 1
    total = max(len(lists), 1)
    out = {}
    for index, name in enumerate(lists.names):
        alone = sum(target in [p for p in proposals[index] if p not in exclude][:limit]
                    for target, proposals, exclude in zip(lists.targets, lists.proposals, lists.excluded))
        without = CandidateLists([n for n in lists.names if n != name], lists.positions, lists.targets,
                                 [[p for i, p in enumerate(row) if i != index] for row in lists.proposals],
                                 lists.excluded)
        out[name] = {"recall_alone": alone / total, "added": added[name] / total,
                     "recall_without": blend_recall(without, {n: q for n, q in quotas.items() if n != name}, limit)}
    return out


def save_quotas(path: Path, search: QuotaSearch, **details: Any) -> Path:
    """Write the shares (what the service reads) and the search's figures to ``path``, atomically."""
    document = {"shares": search.shares, "limit": search.limit, "quotas": search.quotas,
                "recall": search.recall, "even_recall": search.even_recall, "queries": search.queries,
                "evaluated": search.evaluated, **details}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


def log_quotas(settings: Any, search: QuotaSearch, path: Path, **params: Any) -> str:
    """The search as an MLflow run: the quotas as parameters, the recalls as metrics, the file as artifact."""
    import mlflow  # heavy: only when logging

    from freshcart.training.registry import connect

    connect(settings)
    with mlflow.start_run(run_name="candidate quotas") as run:
        mlflow.set_tags({"freshcart.kind": "candidate-quotas"})
        mlflow.log_params({**{f"quota.{n}": q for n, q in search.quotas.items()}, "limit": search.limit, **params})
        mlflow.log_metrics({"train_recall": search.recall, "even_split_recall": search.even_recall,
                            "queries": float(search.queries), "evaluated": float(search.evaluated)})
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / path.name
            copy.write_text(path.read_text())
            mlflow.log_artifact(str(copy))
        return run.info.run_id


def as_dict(search: QuotaSearch) -> dict[str, Any]:
    return {**asdict(search), "shares": search.shares}
