"""Request and response bodies of the decision service (pydantic; the OpenAPI schema).

Shared by the decision core and the BentoML glue, so the core is tested with the
very objects the HTTP layer builds.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
    field_validator,
    model_validator,
)

STRICT = ConfigDict(extra="forbid")
MAX_CONTEXT_BYTES = 16_384
"""Largest request context (encoded): it is stored with every decision it shaped."""


def _bounded_context(value: dict[str, Any]) -> dict[str, Any]:
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except ValueError:
        raise ValueError("holds NaN or Infinity") from None
    if len(text) > MAX_CONTEXT_BYTES:
        raise ValueError(f"is {len(text)} bytes encoded, over the limit of {MAX_CONTEXT_BYTES}")
    return value


SENDABLE = "False: do not e-mail this person; `not_sendable_reason` says why."
NOT_SENDABLE = (
    "Why `sendable` is false (null when it is true), the first that applies: "
    "`no_email_consent`, `unsubscribed`, `hard_bounce`, `complaint`, "
    "`suppressed:<reason>` (the suppression list), `frequency_cap:<channel>:<max>/<days>d` "
    "(`privacy.frequency_caps`), `unknown_customer` (not in the feature snapshot)."
)

Id = Annotated[str, Field(min_length=1, max_length=256)]
Context = Annotated[
    dict[str, Any],
    AfterValidator(_bounded_context),
    Field(
        default_factory=dict,
        description=(
            f"Request context, visible to rules as `context` and logged with the decision "
            f"(at most {MAX_CONTEXT_BYTES} bytes encoded)."
        ),
        examples=[{"campaign_id": "spring-sale"}],
    ),
]


class Filters(BaseModel):
    """Business filters, applied to the candidates before any scoring."""

    model_config = STRICT

    exclude_purchased: bool = Field(True, description="Drop items the customer bought.")
    in_stock_only: bool = Field(True, description="Only items known to be in stock.")
    categories: list[Id] | None = Field(
        None, max_length=1000, description="Only items of these categories (none: every category)."
    )
    exclude_items: list[Id] = Field(
        default_factory=list, max_length=10_000, description="Never return these items."
    )


class RecommendRequest(BaseModel):
    model_config = STRICT

    customer_id: Id = Field(examples=["c0000042"])
    n: int | None = Field(None, ge=1, le=500, description="Items wanted (default: configured).")
    filters: Filters = Field(default_factory=Filters)
    context: Context
    decision_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="The caller's id for this decision (default: a new one), logged with it.",
    )


class Recommendation(BaseModel):
    customer_id: str
    decision_id: str
    items: list[str] = Field(description="Item ids, best first.")
    scores: list[float | None] = Field(
        description="The model's score of each item (null where a rule or fallback placed it)."
    )
    strategy: str = Field(description="model | rule:<name> | fallback:<reason> | consent | holdout")
    model_version: str | None = None
    snapshot: str | None = None
    fallback_reason: str | None = None
    sendable: bool = Field(True, description=SENDABLE)
    not_sendable_reason: str | None = Field(
        None, description=NOT_SENDABLE, examples=["frequency_cap:email:3/7d"]
    )
    reason: str | None = Field(
        None, description="Why fewer items than asked came back (e.g. no item passes the filters)."
    )


class RecommendBatchRequest(BaseModel):
    model_config = STRICT

    customer_ids: list[Id] = Field(
        min_length=1,
        description="Recipients, at most `serving.batch_limit` (413 above).",
        examples=[["c0000042", "c0000043"]],
    )
    n: int | None = Field(None, ge=1, le=500)
    filters: Filters = Field(default_factory=Filters)
    context: Context


class RecommendBatchResponse(BaseModel):
    results: list[Recommendation]
    strategies: dict[str, int] = Field(description="How many answers each strategy gave.")


class SimilarItemsRequest(BaseModel):
    model_config = STRICT

    item_id: Id = Field(examples=["i000123"])
    n: int | None = Field(None, ge=1, le=500)
    filters: Filters = Field(
        default_factory=lambda: Filters(exclude_purchased=False),
        description="exclude_purchased has no customer here and is ignored.",
    )


class SimilarItemsResponse(BaseModel):
    item_id: str
    items: list[str]
    scores: list[float | None]
    strategy: str
    model_version: str | None = None


class ChooseRequest(BaseModel):
    model_config = STRICT

    customer_id: Id = Field(examples=["c0000042"])
    slot: str = Field(
        min_length=1, max_length=64, description="subject, offer, …", examples=["subject"]
    )
    candidates: list[Id] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Content ids to choose from (default: every active one of the slot).",
    )
    context: Context
    decision_id: str | None = Field(None, min_length=1, max_length=128)


class CandidateScore(BaseModel):
    content_id: str
    score: float | None
    probability: float


class Choice(BaseModel):
    customer_id: str
    slot: str
    decision_id: str
    content_id: str
    propensity: float = Field(description="Probability the policy gave the chosen content.")
    candidates: list[CandidateScore]
    strategy: str
    model_version: str | None = None
    snapshot: str | None = None
    fallback_reason: str | None = None
    sendable: bool = Field(True, description=SENDABLE)
    not_sendable_reason: str | None = Field(
        None, description=NOT_SENDABLE, examples=["frequency_cap:email:3/7d"]
    )


class EventsRequest(BaseModel):
    model_config = STRICT

    events: list[dict[str, Any]] = Field(
        min_length=1,
        description=(
            "Event rows in the events contract (as for `tailor ingest`), at most "
            "`serving.max_events_per_call` (413 above). Each is validated on its own: "
            "bad rows are rejected with their reason, the others stored."
        ),
        examples=[
            [
                {
                    "event_id": "e-1",
                    "ts": "2026-11-28T10:00:00Z",
                    "event_type": "product_view",
                    "customer_id": "c0000042",
                    "item_id": "i000123",
                }
            ]
        ],
    )


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the event in the request.")
    reason: str


class EventsResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[RejectedEvent]


class TriggerView(BaseModel):
    trigger: str
    item_id: str | None
    fired_at: str
    expires_at: str


class ConsentRequest(BaseModel):
    """A consent change from a preference centre: each field given takes effect (at
    least one of the two consents; a field left out stays as it is, null is refused)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["consent_email"]},
                {"required": ["consent_personalization"]},
            ]
        },
    )

    consent_email: Annotated[StrictBool | None, WithJsonSchema({"type": "boolean"})] = Field(
        None, description="May be sent marketing e-mail."
    )
    consent_personalization: Annotated[StrictBool | None, WithJsonSchema({"type": "boolean"})] = (
        Field(None, description="May be profiled and get personalised content.")
    )
    ts: Annotated[
        AwareDatetime | None, WithJsonSchema({"type": "string", "format": "date-time"})
    ] = Field(
        None,
        description="When the customer changed it, with a time zone (default: now). An "
        "earlier statement than the one in effect changes nothing; a time the event log "
        "refuses (later than now plus the allowed clock skew, before 1970) answers 409.",
        examples=["2026-11-28T10:00:00Z"],
    )

    @field_validator("consent_email", "consent_personalization", "ts", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("give a value or leave the field out")
        return value

    @model_validator(mode="after")
    def _something_given(self) -> ConsentRequest:
        if self.consent_email is None and self.consent_personalization is None:
            raise ValueError("give consent_email, consent_personalization or both")
        return self

    def changes(self) -> dict[str, bool]:
        """The consents given, by name."""
        return {
            name: value
            for name, value in (
                ("consent_email", self.consent_email),
                ("consent_personalization", self.consent_personalization),
            )
            if value is not None
        }


class ConsentView(BaseModel):
    customer_id: str
    canonical_id: str
    known: bool = Field(description="In the feature snapshot.")
    consent_email: bool | None = Field(description="null: not known (not in the snapshot).")
    consent_personalization: bool | None
    personalised: bool = Field(
        description="Decisions use the customer's data (consent, and a profile in the snapshot)."
    )
    sendable: bool = Field(description=SENDABLE)
    not_sendable_reason: str | None = Field(None, description=NOT_SENDABLE)
    event_id: str = Field(description="The consent_change event written for this change.")


class ErasureReceipt(BaseModel):
    receipt_id: str = Field(description="Kept in the privacy ledger (`tailor audit`).")
    subject: str = Field(
        description="The id erased, as its keyed hash (hk:<key id>:<hex>): no personal data."
    )
    actor: str = Field(description="Who erased: the API key's id.")
    erased_at: str = Field(description="When, UTC (ISO 8601).")
    ids: int = Field(description="Ids of the person erased (customer and anonymous ids).")
    removed: dict[str, int] = Field(description="Rows, users or files removed, per store.")
    not_yet_scrubbed: list[str] | None = Field(
        None,
        description=(
            "SQLite files whose write-ahead log a long reader kept from emptying: the "
            "deleted rows' pages leave it at its next checkpoint."
        ),
    )


class CustomerView(BaseModel):
    customer_id: str
    canonical_id: str
    known: bool
    personalised: bool
    sendable: bool
    not_sendable_reason: str | None = Field(None, description=NOT_SENDABLE)
    features: dict[str, Any]
    segments: list[str]
    triggers: list[TriggerView]
    holdout: bool


class Status(BaseModel):
    state: str = Field(
        description="ready | degraded (with the reasons; /readyz says whether it decides)"
    )
    reasons: list[str]
    models: dict[str, str | None]
    snapshot: str | None
    snapshot_age_hours: float | None
    model_age_hours: dict[str, float | None] = Field(
        default_factory=dict, description="Hours since each loaded champion was registered."
    )
    challenger: dict[str, str | None] | None = Field(
        None,
        description=(
            "The models serving the challenger's share (serving.challenger_share), where a "
            "challenger alias is set; none: every decision is the champion's."
        ),
    )
    loaded_at: str | None
