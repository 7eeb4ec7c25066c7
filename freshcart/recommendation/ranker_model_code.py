"""The registered ranker as MLflow "models from code": the file ``log_model`` stores as ``python_model``.

MLflow copies this file into the model and runs it at load time, so the ranker is rebuilt
from FreshCart's code rather than unpickled. Nothing imports this module.
"""

from __future__ import annotations

import mlflow.models

from freshcart.recommendation.ranker_pyfunc import RankerPyfunc

mlflow.models.set_model(RankerPyfunc())
