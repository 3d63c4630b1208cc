"""Reading models back from the MLflow registry: the embedded store's URI, the
``champion`` alias, and the raw model (recommender, pipeline or selector) of a version.

Training writes the registry (``training.tracking``); the service only reads it, so
the read side lives here, beside the artifacts it loads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from features.errors import InputError, NotFoundError
from models.pipeline import RecommenderPipeline, load_artifact
from models.recommender import Recommender
from models.selector import Selector

CHAMPION = "champion"
"""The registry alias serving loads."""
CHALLENGER = "challenger"
"""The alias serving loads beside the champion for ``serving.challenger_share`` of the
customers (a canary)."""
RECOMMENDER_KEY = "recommender"
"""Key of a recommender's folder in its pyfunc's artifacts."""
SELECTOR_KEY = "selector"
"""Key of a selector's folder in its pyfunc's artifacts."""

Loaded = Recommender | RecommenderPipeline | Selector


def tracking_uri(home: Path) -> str:
    """The embedded tracking URI under ``home``; creates the folders.

    Parameters
    ----------
    home : pathlib.Path
        ``TAILOR_HOME`` (``Settings.home``).

    Returns
    -------
    str
        ``sqlite:///<home>/mlflow/mlflow.db`` (absolute); artifacts go to
        ``<home>/mlflow/artifacts``.
    """
    root = Path(home).expanduser().resolve() / "mlflow"
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def registry_client(uri: str) -> MlflowClient:
    """A client for tracking and registry at ``uri``, without touching MLflow's
    process-wide fluent URIs."""
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion_version(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding the ``champion`` alias, or ``None`` when there is none."""
    return alias_version(client, name, CHAMPION)


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version holding ``alias``, or ``None`` when there is none."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        # No such registered model, or (MLflow 3.17) no such alias on it.
        missing_alias = error.error_code == "INVALID_PARAMETER_VALUE" and "alias" in str(error)
        if error.error_code == "RESOURCE_DOES_NOT_EXIST" or missing_alias:
            return None
        raise


def load_champion(client: MlflowClient, name: str) -> tuple[Loaded, ModelVersion]:
    """The raw model behind ``models:/<name>@champion`` and its version.

    Raises
    ------
    NotFoundError
        When ``name`` has no champion (or does not exist).
    """
    version = champion_version(client, name)
    if version is None:
        raise NotFoundError(
            f"registered model {name!r} has no {CHAMPION!r} version in "
            f"{client.tracking_uri}; promote one first"
        )
    return load_version(client, name, version.version), version


def load_version(client: MlflowClient, name: str, version: int | str) -> Loaded:
    """The raw model of one registered version: a recommender or pipeline (artifact
    ``recommender``) or a content selector (artifact ``selector``), not the pyfunc."""
    source = client.get_model_version_download_uri(name, str(version))
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=tmp, tracking_uri=client.tracking_uri
            )
        )
        flavor = Model.load(local).flavors.get("python_function", {})
        artifacts = flavor.get("artifacts", {})
        # Every loader reads its arrays into memory, so the folder can go.
        if RECOMMENDER_KEY in artifacts:
            return load_artifact(local / artifacts[RECOMMENDER_KEY]["path"])
        if SELECTOR_KEY in artifacts:
            return Selector.load(local / artifacts[SELECTOR_KEY]["path"])
        raise InputError(
            "model", f"{name}/{version}", "is not a Tailor model (no recommender or selector)"
        )
