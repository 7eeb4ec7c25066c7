"""The registered ranker: one MLflow ``pyfunc`` that scores candidate rows with the trained booster.

``mlflow.pyfunc.load_model("models:/freshcart-ranker@champion").predict(frame)`` takes one row per
candidate with the ranker's input columns (the propensity model's input, the candidate-source
features and ``propensity_score``: :func:`~freshcart.recommendation.ranker.ranker_inputs`) and
returns one score per row, higher first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from freshcart.recommendation.ranker import RankerModel


class RankerPyfunc(mlflow.pyfunc.PythonModel):
    """Scores of candidate rows; ``self.model`` is the :class:`RankerModel`."""

    def load_context(self, context: Any) -> None:
        self.model = RankerModel.load(Path(context.artifacts["model"]) / "ranker.json")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        names = self.model.feature_names
        missing = [n for n in names if n not in model_input.columns]
        if missing:
            raise ValueError(f"ranker input lacks column(s) {', '.join(missing[:10])}; pass the columns of "
                             "freshcart.recommendation.ranker.ranker_inputs")
        matrix = model_input[names].to_numpy(dtype=np.float32, na_value=np.nan)
        return self.model.predict_matrix(matrix, names)
