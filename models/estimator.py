"""The base of every learned model: scikit-learn's estimator contract.

Hyper-parameters are keyword-only ``__init__`` arguments, stored unchanged (validated
by ``fit``), so ``get_params`` / ``set_params`` / ``sklearn.base.clone`` come from
``BaseEstimator``. Learned state lives in attributes ending in ``_``, set only by
``fit`` (or ``load``), so ``sklearn.utils.validation.check_is_fitted`` tells a fitted
model from an unfitted one.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from features.errors import NotFoundError


class Estimator(BaseEstimator):
    """A scikit-learn estimator whose use before ``fit`` raises Tailor's not-found error."""

    def _check_fitted(self) -> None:
        try:
            check_is_fitted(self)
        except NotFittedError as exc:
            raise NotFoundError(f"{type(self).__name__} is not fitted; call fit() first") from exc
