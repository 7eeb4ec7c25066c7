"""The registered model: one MLflow ``pyfunc`` that wraps either trained model.

``mlflow.pyfunc.load_model("models:/freshcart-propensity@champion").predict(frame)``
takes rows with the training set's columns (:func:`model_input_columns`: the
candidate's ids and price and the feature-store features, sequences as lists) and
returns one purchase probability per row, whichever model type is champion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Array, ColSpec, Schema, TensorSpec

from freshcart.training.data import LIST_COLUMNS, as_table, model_input_columns

MODEL_TYPES = ("xgboost", "din")
ID_COLUMNS = ("product_id", "category_id")


def load_trained(model_type: str, folder: Path, device: str = "auto") -> Any:
    """A trained model of ``model_type`` from the files its ``save`` wrote into ``folder``."""
    if model_type == "xgboost":
        from freshcart.training.xgb_model import XGBoostModel

        return XGBoostModel.load(folder / "booster.json")
    if model_type == "din":
        from freshcart.training.din_model import DINModel

        return DINModel.load(folder, device)
    raise ValueError(f"model type {model_type!r}: use one of {', '.join(MODEL_TYPES)}")


class PropensityModel(mlflow.pyfunc.PythonModel):
    """Purchase probability of (user, candidate product) rows; the model type comes from ``model_config``."""

    def load_context(self, context: Any) -> None:
        config = context.model_config or {}
        self.model_type = str(config.get("model_type"))
        self.model = load_trained(self.model_type, Path(context.artifacts["model"]), str(config.get("device", "auto")))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        """One probability per input row (``model_input``: a pandas frame or an Arrow table of model inputs).

        MLflow infers no schema from a ``pd.DataFrame`` hint, so the logged signature
        (:func:`signature`) stays the schema it checks inputs against.
        """
        return self.model.predict(as_table(model_input))


def signature() -> ModelSignature:
    """Inputs: ids (long), sequences (arrays of long, may be missing), every other column double (may be NaN)."""
    columns = []
    for name in model_input_columns():
        if name in ID_COLUMNS:
            columns.append(ColSpec("long", name))
        elif name in LIST_COLUMNS:
            columns.append(ColSpec(Array("long"), name, required=False))
        else:
            columns.append(ColSpec("double", name, required=False))
    return ModelSignature(inputs=Schema(columns), outputs=Schema([TensorSpec(np.dtype("float64"), (-1,))]))


def input_frame(table: pa.Table) -> pd.DataFrame:
    """Rows as the registered model takes them: ids as int64, numbers as float64 (NaN if missing), lists as lists."""
    frame = {}
    for name in model_input_columns():
        column = table[name]
        if name in LIST_COLUMNS:
            frame[name] = pd.Series([list(v) if v is not None else [] for v in column.to_pylist()], dtype=object)
        elif name in ID_COLUMNS:
            frame[name] = column.to_numpy().astype(np.int64)
        else:
            frame[name] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return pd.DataFrame(frame)
