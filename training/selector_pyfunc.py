"""MLflow "models from code" definition of a content selector as a pyfunc model.

``training.train_selector`` passes this file's path to ``mlflow.pyfunc.log_model``;
MLflow executes it when the model is loaded (the last line registers the model).
The artifact is the selector's own folder (LightGBM text boosters, content
features as Parquet, a JSON manifest) — no pickle. Input: one row per decision
with ``decision_id`` and the customer's features; output: the chosen
``content_id``, its ``propensity`` and ``score``.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from features.errors import InputError
from models.selector import Selector

ARTIFACT_KEY = "selector"


class SelectorPyfunc(PythonModel):
    """Pyfunc wrapper around a saved :class:`models.selector.Selector`."""

    selector: Selector

    def load_context(self, context: PythonModelContext) -> None:
        self.selector = Selector.load(context.artifacts[ARTIFACT_KEY])

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        if "decision_id" not in model_input.columns:
            raise InputError("decision_id", list(model_input.columns), "a column is required")
        ids = model_input["decision_id"].astype(str).tolist()
        return self.selector.decide(model_input, ids)


mlflow.models.set_model(SelectorPyfunc())
