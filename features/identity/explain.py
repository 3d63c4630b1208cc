"""Why records are one person: the links, keys, match evidence and refusals behind it.

Reads the identity tables of a feature snapshot (:class:`features.identity.Identity`)
and answers for one id — a customer id or an anonymous id — which records make up
its person, what linked each pair (an exact key, shown by the start of its keyed
hash, never as written; a probabilistic match with its probability and per-field
weights; a reviewer's override), and which links were refused around them and why.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from features.errors import NotFoundError
from features.identity.resolution import Identity

REASONS = {
    "shared_device": "an anonymous id that logged in as several people",
    "placeholder": "a placeholder value (identity.placeholder_emails / placeholder_phones)",
    "over_limit": "shared by more records than identity.max_records_per_key",
    "names_differ": "shared by records with different first names (identity.name_check)",
    "different_person": "a probable match kept apart: first names and dates of birth "
    "differ (a household at one address)",
    "matches_over_limit": "probabilistic links would make a person larger than "
    "identity.max_records_per_person",
    "person_over_limit": "its links would make a person larger than "
    "identity.max_records_per_person",
}


def explain(identity: Identity, source_id: str) -> dict[str, Any]:
    """The person ``source_id`` belongs to, and the evidence for it (JSON-ready)."""
    mapping = identity.mapping
    rows = mapping[
        mapping["source_type"].isin(["customer", "anonymous"]) & (mapping["source_id"] == source_id)
    ]
    if rows.empty:
        raise NotFoundError(f"no customer or anonymous id {source_id!r} in the identity table")
    person = str(rows["canonical_id"].iloc[0])
    members = mapping[mapping["canonical_id"] == person]
    customers = members[members["source_type"] == "customer"]
    records = set(customers["source_id"].astype(str))
    links = identity.links
    inside = links[links["customer_a"].isin(records) & links["customer_b"].isin(records)]
    touched = (
        identity.conflicts[
            identity.conflicts["customer_ids"]
            .astype(str)
            .str.split(",")
            .apply(lambda ids: bool(records.intersection(ids)))
        ]
        if len(identity.conflicts)
        else identity.conflicts
    )
    return {
        "id": source_id,
        "person": person,
        "records": [
            {
                "customer_id": str(r["source_id"]),
                "linked_by": str(r.get("linked_by", "") or ""),
                "match_probability": _number(r.get("match_probability")),
            }
            for _, r in customers.iterrows()
        ],
        "anonymous_ids": sorted(
            members.loc[members["source_type"] == "anonymous", "source_id"].astype(str)
        ),
        "links": [
            {
                "customer_a": str(r["customer_a"]),
                "customer_b": str(r["customer_b"]),
                "via": str(r["via"]),
                "key": _short(r["key"]),
                "match_probability": _number(r["match_probability"]),
                "evidence": json.loads(r["evidence"]) if isinstance(r["evidence"], str) else None,
            }
            for _, r in inside.iterrows()
        ],
        "refused": [
            {
                "kind": str(r["kind"]),
                "key": _short(r["key"]),
                "n_customers": int(r["n_customers"]),
                "reason": str(r["reason"]),
                "why": REASONS.get(str(r["reason"]), str(r["reason"])),
            }
            for _, r in touched.iterrows()
        ],
    }


def _short(key: object) -> str | None:
    """A key as shown: a keyed hash ``hk:<key id>:<hex>`` keeps its key id and the
    first 12 hex digits, enough to tell keys apart and to find the full hash."""
    if not isinstance(key, str) or not key:
        return None
    head, _, digest = key.rpartition(":")
    if head and len(digest) > 16:
        return f"{head}:{digest[:12]}…"
    return key if len(key) <= 16 else key[:12] + "…"


def _number(value: object) -> float | None:
    if value is None or pd.isna(value):  # type: ignore[call-overload]
        return None
    return round(float(value), 4)  # type: ignore[arg-type]


def format_explanation(found: dict[str, Any]) -> str:
    """The explanation as text for a terminal."""
    lines = [f"{found['id']} belongs to person {found['person']}"]
    lines.append(f"  records ({len(found['records'])}):")
    for r in found["records"]:
        how = r["linked_by"] or "not linked to another record"
        p = "" if r["match_probability"] is None else f", p = {r['match_probability']:.4f}"
        lines.append(f"    {r['customer_id']:<24} {how}{p}")
    if found["anonymous_ids"]:
        lines.append(f"  anonymous ids (login): {', '.join(found['anonymous_ids'])}")
    if found["links"]:
        lines.append("  links:")
    for link in found["links"]:
        pair = f"{link['customer_a']} — {link['customer_b']}"
        if link["via"] == "probabilistic":
            lines.append(f"    {pair}: probabilistic match, p = {link['match_probability']:.4f}")
            for field, score in (link["evidence"] or {}).items():
                lines.append(f"        {field:<16} {score['level']:<48} {score['weight']:+.2f}")
        elif link["via"] == "override":
            reason = (link["evidence"] or {}).get("reason") or "no reason given"
            lines.append(f"    {pair}: merged by a reviewer ({reason})")
        else:
            lines.append(f"    {pair}: same {link['via']} (keyed hash {link['key']})")
    if found["refused"]:
        lines.append("  refused links around these records:")
    for r in found["refused"]:
        key = f" {r['key']}" if r["key"] else ""
        lines.append(f"    {r['kind']}{key}: {r['n_customers']} records; {r['why']}")
    return "\n".join(lines)
