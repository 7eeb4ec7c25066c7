"""Why a product got its score: feature contributions (XGBoost) or attention over recent products (DIN).

XGBoost: exact TreeSHAP (``pred_contribs``), one contribution per input column in
log-odds plus the bias; they sum to the score's log-odds. The attention model: the
weight its attention gives each of the shopper's recent products for this candidate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from freshcart.serving.model import ServingModel


def xgboost_contributions(model: Any, table: pa.Table) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """TreeSHAP contributions ``(n, features)``, the bias ``(n,)``, the names and the model's own input matrix."""
    import xgboost as xgb

    from freshcart.training.data import tabular_matrix

    matrix, names = tabular_matrix(table)
    data = xgb.DMatrix(matrix, feature_names=model.feature_names, nthread=1)
    contribs = model.booster.predict(data, pred_contribs=True, iteration_range=(0, model.best_iteration + 1))
    return contribs[:, :-1], contribs[:, -1], names, matrix


def explain(serving: ServingModel, table: pa.Table, top: int) -> list[dict[str, Any]]:
    """The ``top`` largest contributions (by size) of each row, as JSON-ready dicts."""
    if serving.info.model_type == "xgboost":
        contribs, bias, names, matrix = xgboost_contributions(serving.model, table)
        out = []
        for i in range(table.num_rows):
            order = np.argsort(-np.abs(contribs[i]), kind="stable")[:top]
            out.append({"kind": "tree_shap", "bias": float(bias[i]), "contributions": [
                {"feature": names[j], "value": None if np.isnan(matrix[i, j]) else float(matrix[i, j]),
                 "contribution": float(contribs[i, j])} for j in order]})
        return out
    if serving.info.model_type == "din":
        sequences, weights = serving.model.attention_weights(table)
        out = []
        for i in range(table.num_rows):
            present = np.flatnonzero(sequences[i] != 0)
            order = present[np.argsort(-np.abs(weights[i, present]), kind="stable")][:top]
            out.append({"kind": "attention", "bias": None, "contributions": [
                {"feature": "recent_product", "product_id": int(sequences[i, j]),
                 "position_from_newest": int(sequences.shape[1] - 1 - j), "contribution": float(weights[i, j])}
                for j in order]})
        return out
    raise ValueError(f"model type {serving.info.model_type!r} has no explanation; use xgboost or din")
