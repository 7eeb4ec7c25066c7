"""The registered model as MLflow "models from code": the file ``log_model`` stores as ``python_model``.

MLflow copies this file into the model and runs it at load time, so the model is
rebuilt from FreshCart's code rather than unpickled. Nothing imports this module.
"""

from __future__ import annotations

import mlflow.models

from freshcart.training.pyfunc import PropensityModel

mlflow.models.set_model(PropensityModel())
