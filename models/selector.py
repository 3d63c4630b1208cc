"""Content selectors: a LightGBM outcome model wrapped in an exploration policy.

The outcome model estimates the reward (click, conversion …) of showing a content
variant to a customer from customer features × content features, so a variant
never sent before is scored from its own features. A bootstrap ensemble of
boosters gives Thompson-style sampling; the policy turns scores into a
probability over the eligible candidates, and a decision draws from it with a
generator seeded by the decision id, so a replay gives the same choice and the
logged propensity is the exact probability of what was shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.errors import InputError, NotFoundError
from models.content_features import OFFER_FEATURES
from models.estimator import Estimator
from models.policy import Policy, choose

CUSTOMER_FEATURES = [
    "engagement_score",
    "email_open_rate_90d",
    "email_click_rate_90d",
    "frequency",
    "orders",
    "monetary",
    "aov",
    "recency_days",
    "days_since_last_event",
    "product_view_30d",
    "add_to_cart_30d",
    "purchase_90d",
    "email_open_30d",
    "email_click_30d",
]
#: Price sensitivity: which offer works depends on it (a discount for a bargain hunter,
#: free shipping for a convenience seeker); it has no bearing on a subject line.
PRICE_FEATURES = ["viewed_price_index_90d", "purchased_price_index", "discount_purchase_share"]
#: Every numeric customer feature a selector may read.
ALL_CUSTOMER_FEATURES = [*CUSTOMER_FEATURES, *PRICE_FEATURES]
COUNTRIES = ("US", "CA", "GB", "AU", "DE")
#: What an offer's effect depends on: how price-sensitive the customer is, what they
#: spend, where they live.
OFFER_CUSTOMER_FEATURES = [
    *PRICE_FEATURES,
    "aov",
    *(f"country_{code}" for code in COUNTRIES),
]

#: 2: a constant policy explores ``epsilon`` (format 1 saved a meaningless 0.1 there),
#: and the selector stores its customer design (numeric features, category levels).
ARTIFACT_FORMAT = 2
#: Customer attributes from the customer record (``features.snapshot``) start so.
ATTRIBUTE_PREFIX = "attr_"


class OutcomeModel(Estimator):
    """P(reward | customer, content): a LightGBM classifier, optionally a bootstrap ensemble.

    A scikit-learn estimator (:class:`models.estimator.Estimator`).

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples
        LightGBM settings (small trees: campaign logs are small and noisy).
    ensemble : int
        Boosters fitted on bootstrap resamples (1: a single booster on all rows).
    random_state : int
        Seed of the bootstrap and of LightGBM.
    columns : list of str, optional
        The design columns the model uses (None: every column given to ``fit``);
        the others are ignored, at fit and at predict time.
    num_threads : int
        LightGBM threads of ``fit`` (campaign logs are small: one thread is fastest,
        measured 3.3 s against 6.2 s for OpenMP's default on 13k rows, 2 cores).

    Attributes
    ----------
    boosters_ : list of lightgbm.Booster
        One per ensemble member.
    feature_names_ : list of str
        The design columns the boosters read, in order.
    objective_ : {"binary", "regression"}
        ``binary`` for 0/1 rewards (a probability), ``regression`` for others (a mean).
    """

    def __init__(
        self,
        *,
        n_estimators: int = 150,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 50,
        ensemble: int = 1,
        random_state: int = 0,
        columns: list[str] | None = None,
        num_threads: int = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.ensemble = ensemble
        self.random_state = random_state
        self.columns = columns
        self.num_threads = num_threads

    boosters_: list[lgb.Booster]
    feature_names_: list[str]
    objective_: str

    def fit(self, features: pd.DataFrame, rewards: np.ndarray) -> Self:
        """Fit on (n_rows, n_features) customer × content features and rewards:
        0/1 rewards get a binary (probability) model, others a regression."""
        rewards = np.asarray(rewards, dtype=float)
        if len(features) != len(rewards):
            raise InputError("rewards", len(rewards), f"expected {len(features)} rows")
        if not np.isfinite(rewards).all():
            raise InputError("rewards", "non-finite", "every reward must be a finite number")
        if len(np.unique(rewards)) < 2:
            raise InputError("rewards", float(rewards.mean()), "needs both outcomes to learn")
        # 0/1 rewards (open, click, conversion): a probability; others (margin): a mean.
        objective = "binary" if np.isin(rewards, (0.0, 1.0)).all() else "regression"
        if self.columns is not None:
            missing = [c for c in self.columns if c not in features.columns]
            if missing:
                raise InputError("features", missing, "missing columns the model is set to use")
            features = features[list(self.columns)]
        feature_names = [str(c) for c in features.columns]
        values = features.to_numpy(dtype=np.float64)
        rng = np.random.default_rng(self.random_state)
        params = {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "verbosity": -1,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
        }
        boosters = []
        for member in range(self.ensemble):
            rows = (
                np.arange(len(values))
                if self.ensemble == 1
                else rng.integers(0, len(values), len(values))
            )
            data = lgb.Dataset(values[rows], label=rewards[rows], feature_name=feature_names)
            booster = lgb.train(
                {**params, "seed": self.random_state + member},
                data,
                num_boost_round=self.n_estimators,
            )
            boosters.append(booster)
        self.boosters_ = boosters
        self.feature_names_ = feature_names
        self.objective_ = objective
        return self

    def predict_members(self, features: pd.DataFrame) -> np.ndarray:
        """Predicted reward probability per ensemble member, shape (ensemble, n_rows)."""
        self._check_fitted()
        missing = [f for f in self.feature_names_ if f not in features.columns]
        if missing:
            raise InputError("features", missing, "missing columns the model was trained on")
        values = features[self.feature_names_].to_numpy(dtype=np.float64)
        # A few rows (one decision) cost ~2 ms per booster in OpenMP start-up alone.
        threads = 1 if len(values) <= 2048 else 0
        return np.vstack([b.predict(values, num_threads=threads) for b in self.boosters_])

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Mean predicted reward probability, shape (n_rows,)."""
        return self.predict_members(features).mean(axis=0)

    def save(self, path: Path) -> Path:
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for i, booster in enumerate(self.boosters_):
            booster.save_model(str(path / f"booster_{i}.txt"))
        manifest = {
            "format": ARTIFACT_FORMAT,
            "class": "outcome_model",
            "params": self.get_params(),
            "features": self.feature_names_,
            "objective": self.objective_,
        }
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> OutcomeModel:
        path = Path(path)
        if not (path / "manifest.json").exists():
            raise NotFoundError(f"no outcome model at {path} (manifest.json missing)")
        manifest = json.loads((path / "manifest.json").read_text())
        model = cls(**manifest["params"])
        model.feature_names_ = list(manifest["features"])
        model.objective_ = str(manifest.get("objective", "binary"))
        model.boosters_ = [
            lgb.Booster(model_file=str(path / f"booster_{i}.txt")) for i in range(model.ensemble)
        ]
        return model


OFFER_TREES: dict[str, int] = {"n_estimators": 600, "num_leaves": 4, "min_child_samples": 200}
"""LightGBM settings of an offer model: shallow trees, large leaves."""


def slot_model(slot: str, *, ensemble: int = 1, random_state: int = 0) -> OutcomeModel:
    """The outcome model a slot is fitted with.

    An offer changes conversion by a few points, and which offer wins depends on one
    trait of the customer (price sensitivity) seen through a few noisy features, in a
    log of some thousands of opened emails. A general model over every customer
    feature fits noise there and scores the offers nearly alike for everyone; so an
    offer model sees only the features its effect can depend on
    (:data:`OFFER_CUSTOMER_FEATURES` and the offer's own), with shallow trees and large
    leaves. Other slots (subject lines: opens and clicks, driven by engagement and the
    line's text) use every feature.
    """
    if slot == "offer":
        return OutcomeModel(
            **OFFER_TREES,
            ensemble=ensemble,
            random_state=random_state,
            columns=[*OFFER_CUSTOMER_FEATURES, *OFFER_FEATURES],
        )
    return OutcomeModel(ensemble=ensemble, random_state=random_state)


def slot_customer_features(slot: str) -> list[str]:
    """The numeric behavioural features a slot's training design holds: offers add
    price sensitivity to the general ones."""
    return ALL_CUSTOMER_FEATURES if slot == "offer" else CUSTOMER_FEATURES


@dataclass(frozen=True)
class CustomerDesign:
    """How customer rows become the customer columns of a selector's design matrix.

    Stored with the selector, so serving builds exactly the columns training built.

    Attributes
    ----------
    numeric : tuple of str
        Numeric columns, taken as numbers (NaN where unknown or not a number).
    categories : tuple of (str, tuple of str)
        Text columns and their levels: column ``<name>#<i>`` is 1 where the value is
        level ``i``, 0 where it is another value, NaN where it is unknown.
    countries : bool
        Add ``country_<code>`` one-hot columns (:data:`COUNTRIES`).
    priors : tuple of str
        The customer's past responses (``prior_sends_<c>``, ``prior_clicks_<c>``).
    """

    numeric: tuple[str, ...] = tuple(ALL_CUSTOMER_FEATURES)
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()
    countries: bool = True
    priors: tuple[str, ...] = ()

    @classmethod
    def learn(
        cls,
        table: pd.DataFrame,
        numeric: list[str],
        *,
        max_levels: int = 20,
        min_share: float = 0.01,
        min_rows: int = 20,
    ) -> tuple[CustomerDesign, dict[str, str]]:
        """The design of a training table: the given numeric features, every
        ``attr_*`` attribute (numbers as numbers, text as categories), the past
        responses (``prior_*``).

        A text attribute's levels are its values held by at least ``min_rows`` rows
        and ``min_share`` of them, the ``max_levels`` most frequent: a low-cardinality
        attribute keeps every level, a high-cardinality one (zip codes, names) only
        its frequent values, and none at all when no value is frequent.

        Returns
        -------
        design : CustomerDesign
        dropped : dict of str to str
            Attributes left out, and why.
        """
        attr_numeric: list[str] = []
        categories: list[tuple[str, tuple[str, ...]]] = []
        dropped: dict[str, str] = {}
        floor = max(min_rows, int(np.ceil(min_share * len(table))))
        for column in sorted(c for c in table.columns if str(c).startswith(ATTRIBUTE_PREFIX)):
            values = table[column]
            if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                if values.notna().any():
                    attr_numeric.append(str(column))
                else:
                    dropped[str(column)] = "no value"
                continue
            counts = values.dropna().astype(str).value_counts()
            levels = counts[counts >= floor].index[:max_levels]
            if len(levels) == 0:
                dropped[str(column)] = (
                    f"{len(counts)} distinct values, none held by {floor} rows or more"
                )
                continue
            categories.append((str(column), tuple(str(v) for v in sorted(levels))))
        priors = tuple(str(c) for c in table.columns if str(c).startswith("prior_"))
        design = cls(
            numeric=(*numeric, *attr_numeric),
            categories=tuple(categories),
            countries=True,
            priors=priors,
        )
        return design, dropped

    def columns(self) -> list[str]:
        """The design's column names, in order."""
        names = list(self.numeric)
        for column, levels in self.categories:
            names.extend(f"{column}#{i}" for i in range(len(levels)))
        if self.countries:
            names.extend(f"country_{code}" for code in COUNTRIES)
        names.extend(self.priors)
        return names

    def frame(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The customer columns of ``rows`` (one design row per row, same index)."""
        columns: dict[str, Any] = {}
        for column in self.numeric:
            values = rows[column] if column in rows.columns else np.nan
            columns[column] = pd.to_numeric(
                pd.Series(values, index=rows.index), errors="coerce"
            ).astype(float)
        for column, levels in self.categories:
            raw = rows[column] if column in rows.columns else pd.Series(None, index=rows.index)
            known = raw.notna().to_numpy()
            as_text = raw.astype(object).where(raw.notna(), "").astype(str).to_numpy()
            for i, level in enumerate(levels):
                columns[f"{column}#{i}"] = np.where(known, (as_text == level).astype(float), np.nan)
        if self.countries:
            country = (
                rows["country"] if "country" in rows.columns else pd.Series("", index=rows.index)
            )
            for code in COUNTRIES:
                columns[f"country_{code}"] = (country == code).to_numpy(dtype=float)
        for column in self.priors:
            values = rows[column] if column in rows.columns else 0.0
            columns[column] = pd.Series(values, index=rows.index).astype(float)
        return pd.DataFrame(columns, index=rows.index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": list(self.numeric),
            "categories": [[c, list(levels)] for c, levels in self.categories],
            "countries": self.countries,
            "priors": list(self.priors),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CustomerDesign:
        return cls(
            numeric=tuple(data["numeric"]),
            categories=tuple((str(c), tuple(levels)) for c, levels in data["categories"]),
            countries=bool(data["countries"]),
            priors=tuple(data["priors"]),
        )


def customer_design(frame: pd.DataFrame, features: list[str] | None = None) -> pd.DataFrame:
    """Numeric customer features (NaN where unknown; ``features``, default every
    behavioural one a selector may read), country one-hot, and the customer's past
    responses to each variant (``prior_*`` columns of ``frame``): the design of
    :class:`CustomerDesign` without attributes."""
    priors = tuple(str(c) for c in frame.columns if str(c).startswith("prior_"))
    numeric = tuple(ALL_CUSTOMER_FEATURES if features is None else features)
    return CustomerDesign(numeric=numeric, priors=priors).frame(frame)


def candidate_scores(
    model: OutcomeModel,
    customer_rows: pd.DataFrame,
    content: pd.DataFrame,
    candidates: list[str],
    design: CustomerDesign | None = None,
) -> np.ndarray:
    """Predicted reward per ensemble member, customer and candidate: (members, n, k).

    ``design``: how the customer columns are built (None: :func:`customer_design`)."""
    customer = (
        customer_design(customer_rows) if design is None else design.frame(customer_rows)
    ).reset_index(drop=True)
    n, k = len(customer), len(candidates)
    repeated = customer.loc[np.repeat(np.arange(n), k)].reset_index(drop=True)
    contents = content.loc[np.tile(np.asarray(candidates), n)].reset_index(drop=True)
    design_matrix = pd.concat([repeated, contents], axis=1)
    members = model.predict_members(design_matrix)
    return members.reshape(members.shape[0], n, k)


@dataclass
class Selector:
    """A deployable content selector for one slot: outcome model, policy, candidates.

    ``content`` holds the feature row of every candidate (index: content id);
    :meth:`decide` scores the eligible candidates for each customer, turns the
    scores into the policy's probabilities and draws with the decision id.
    """

    slot: str
    reward: str
    model: OutcomeModel
    policy: Policy
    candidates: list[str]
    content: pd.DataFrame
    design: CustomerDesign | None = None

    def decide(
        self,
        customers: pd.DataFrame,
        decision_ids: list[str],
        *,
        eligible: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """One decision per customer row: ``content_id``, ``propensity`` and scores.

        Parameters
        ----------
        customers : pandas.DataFrame
            Customer features (see :func:`customer_design`), one row per decision.
        decision_ids : list of str
            Seeds of the draws: the same id always gives the same choice.
        eligible : numpy.ndarray of bool, shape (n, n_candidates), optional
            Candidates each customer may be shown; ineligible ones get probability 0.
        """
        members = candidate_scores(
            self.model, customers, self.content, self.candidates, self.design
        )
        if eligible is not None:
            if eligible.shape != members.shape[1:]:
                raise InputError("eligible", eligible.shape, f"expected {members.shape[1:]}")
            if not eligible.any(axis=1).all():
                raise InputError("eligible", "a row with no candidate", "nothing to choose from")
        probabilities = self.policy.probabilities(members, self.candidates, eligible)
        chosen = choose(probabilities, decision_ids)
        rows = np.arange(len(chosen))
        scores = members.mean(axis=0)
        return pd.DataFrame(
            {
                "decision_id": decision_ids,
                "content_id": np.asarray(self.candidates)[chosen],
                "propensity": probabilities[rows, chosen],
                "score": scores[rows, chosen],
            }
        )

    def save(self, path: Path) -> Path:
        path = Path(path)
        self.model.save(path / "outcome_model")
        self.content.to_parquet(path / "content.parquet")
        manifest = {
            "format": ARTIFACT_FORMAT,
            "class": "selector",
            "slot": self.slot,
            "reward": self.reward,
            "candidates": self.candidates,
            "policy": self.policy.to_dict(),
            "design": None if self.design is None else self.design.to_dict(),
        }
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> Selector:
        path = Path(path)
        if not (path / "manifest.json").exists():
            raise NotFoundError(f"no selector at {path} (manifest.json missing)")
        manifest = json.loads((path / "manifest.json").read_text())
        if manifest.get("class") != "selector":
            raise InputError("class", manifest.get("class"), "expected selector")
        policy = dict(manifest["policy"])
        if manifest.get("format", 1) < 2 and policy.get("kind") == "constant":
            policy["epsilon"] = 0.0  # format 1: a constant policy never explored
        design = manifest.get("design")
        return cls(
            slot=manifest["slot"],
            reward=manifest["reward"],
            model=OutcomeModel.load(path / "outcome_model"),
            policy=Policy(**policy),
            candidates=list(manifest["candidates"]),
            content=pd.read_parquet(path / "content.parquet"),
            design=None if design is None else CustomerDesign.from_dict(design),
        )
