"""Features of content variants that generalise to variants never sent.

A subject line is described by its text alone — length, words, emoji, numbers and
percentages, a question, urgency words, a personalisation token, capitalisation —
plus hashed word n-grams, so a new line is scored from what it says. An offer is
described by its attributes (offer type, discount, cost) and by which offer it is
(``offer_id_<id>``): offers whose attributes are alike (two merchandise e-mails) are
still told apart once they have been sent.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

from features.errors import InputError

URGENCY_WORDS = (
    "last chance",
    "ends tonight",
    "ends today",
    "hurry",
    "now",
    "today only",
    "final",
    "don't miss",
    "limited",
    "last call",
    "only",
)
_EMOJI = re.compile(
    "[\U0001f300-\U0001faff\U00002600-\U000027bf\U0001f000-\U0001f02f\U0001f1e6-\U0001f1ff]"
)
_TOKEN = re.compile(r"\{\s*\w+\s*\}|\{\{\s*\w+\s*\}\}|%\w+%")
_NUMBER = re.compile(r"\d")
_PERCENT = re.compile(r"\d+\s*%|percent", re.IGNORECASE)

SUBJECT_FEATURES = [
    "subject_length",
    "subject_words",
    "subject_emoji",
    "subject_number",
    "subject_percent",
    "subject_question",
    "subject_exclamation",
    "subject_urgency",
    "subject_personalised",
    "subject_caps_ratio",
]
OFFER_TYPES = ("percent_off", "free_shipping", "none")
OFFER_FEATURES = [*(f"offer_{t}" for t in OFFER_TYPES), "offer_discount_pct", "offer_cost"]
#: Offer identity columns are named so: ``offer_id_<content id, letters digits _>``.
OFFER_ID_PREFIX = "offer_id_"


def offer_id_column(content_id: str) -> str:
    """The identity feature of one offer (LightGBM-safe: letters, digits, ``_``)."""
    return OFFER_ID_PREFIX + re.sub(r"[^0-9A-Za-z_]", "_", str(content_id))


def subject_features(texts: pd.Series | list[str]) -> pd.DataFrame:
    """Hand-made features of subject lines, one row per text (vectorised string ops)."""
    text = pd.Series(texts, dtype="string").fillna("")
    lower = text.str.lower()
    letters = text.str.count(r"[A-Za-z]")
    upper = text.str.count(r"[A-Z]")
    urgency = np.zeros(len(text), dtype=bool)
    for word in URGENCY_WORDS:
        urgency |= lower.str.contains(word, regex=False).to_numpy(dtype=bool)
    return pd.DataFrame(
        {
            "subject_length": text.str.len().to_numpy(dtype=float),
            "subject_words": text.str.count(r"\S+").to_numpy(dtype=float),
            "subject_emoji": text.str.contains(_EMOJI).to_numpy(dtype=float),
            "subject_number": text.str.contains(_NUMBER).to_numpy(dtype=float),
            "subject_percent": text.str.contains(_PERCENT).to_numpy(dtype=float),
            "subject_question": text.str.contains("?", regex=False).to_numpy(dtype=float),
            "subject_exclamation": text.str.contains("!", regex=False).to_numpy(dtype=float),
            "subject_urgency": urgency.astype(float),
            "subject_personalised": text.str.contains(_TOKEN).to_numpy(dtype=float),
            "subject_caps_ratio": (upper / letters.where(letters > 0, 1)).to_numpy(dtype=float),
        }
    )


def subject_ngrams(texts: pd.Series | list[str], n_features: int = 64) -> sp.csr_matrix:
    """Hashed word uni- and bi-grams (signed, l2-normalised), shape (n, n_features)."""
    vectorizer = HashingVectorizer(
        n_features=n_features, ngram_range=(1, 2), alternate_sign=False, norm="l2"
    )
    return sp.csr_matrix(vectorizer.transform(pd.Series(texts).fillna("").astype(str)))


def offer_features(attributes: pd.Series | list[str | None]) -> pd.DataFrame:
    """Offer attributes (JSON text) as numbers: offer type one-hot, discount, cost."""
    parsed = [
        json.loads(a) if isinstance(a, str) and a.strip() else {}
        for a in pd.Series(attributes, dtype=object)
    ]
    frame = pd.DataFrame(
        {
            "type": [p.get("offer_type", "none") for p in parsed],
            "discount": [float(p.get("discount_pct", 0) or 0) for p in parsed],
            "cost": [float(p.get("cost", 0) or 0) for p in parsed],
        }
    )
    out = pd.DataFrame({f"offer_{t}": (frame["type"] == t).astype(float) for t in OFFER_TYPES})
    out["offer_discount_pct"] = frame["discount"].to_numpy()
    out["offer_cost"] = frame["cost"].to_numpy()
    return out


def content_features(content: pd.DataFrame, *, n_grams: int = 32) -> pd.DataFrame:
    """One feature row per content variant (index: content_id), any slot.

    Subject lines get text features and hashed n-grams (``ngram_0`` …); offers get
    their attribute features; other slots get zeros.
    """
    content = content.reset_index(drop=True)
    subjects = subject_features(content["text"].where(content["slot"] == "subject", ""))
    grams = subject_ngrams(content["text"].where(content["slot"] == "subject", ""), n_grams)
    grams_frame = pd.DataFrame(grams.toarray(), columns=[f"ngram_{i}" for i in range(n_grams)])
    offers = offer_features(content["attributes"].where(content["slot"] == "offer", None))
    is_subject = (content["slot"] == "subject").to_numpy()[:, None]
    is_offer = (content["slot"] == "offer").to_numpy()[:, None]
    ids = content["content_id"].astype(str)
    offer_ids = sorted(set(ids[content["slot"] == "offer"]))
    names = [offer_id_column(c) for c in offer_ids]
    if len(set(names)) < len(names):
        raise InputError("content_id", offer_ids, "two offer ids give one feature name")
    identity = pd.DataFrame(
        {name: (ids == c).to_numpy(dtype=float) for name, c in zip(names, offer_ids, strict=True)},
        index=content.index,
    )
    frame = pd.concat(
        [subjects * is_subject, grams_frame * is_subject, offers * is_offer, identity], axis=1
    )
    frame.index = ids.to_numpy()
    return frame
