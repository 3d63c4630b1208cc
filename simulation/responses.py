"""The simulated store's response to an e-mail the decision service chose.

:func:`simulation.simulate` draws historical campaigns whose subject line and offer a
known logging policy picked. To serve the simulated store with the decision service
for some simulated days, a test needs the other half of the loop: for each e-mail
sent with the subject line and offer the service chose (``POST /choose``), what the
recipient did, as events to post back (``POST /events``). :class:`Responder` answers
that, drawing from the store's own planted models with the very functions the
historical campaigns draw with (:mod:`simulation.campaigns`):

- **open**: ``sigmoid(base_logit + email_engagement + the subject line's trait
  effects - lapsed_penalty * [sent at or after lapse_ts])`` (``truth["open_model"]``);
- **click given open**: ``truth["offer_click"][customer_type][offer]``;
- **purchase given open**: ``truth["offer_conversion"][customer_type][offer]`` (only
  after a click), a checkout one second before it; the item is drawn from the
  person's category preference among items that stay in stock over the simulated
  window, by popularity, at list price less the offer's discount, quantity 1;
- **unsubscribe**: ``truth["value_model"]["unsubscribe_given_open_without_click"]``
  after an open without a click;
- **delays**: open about three hours after the send (log-normal), then click,
  checkout and purchase within ``truth["attribution_hours"]`` of the send.

:meth:`Responder.expected` gives the true rates of a send, the values a report's
estimates should cover. Given the propensities ``/choose`` answered,
:meth:`Responder.respond` also logs the send itself, as an e-mail platform does: the two
``email_sent`` rows (subject line, offer) the historical campaigns log.

Conventions
-----------
- Events are dicts in the events contract (:data:`features.data.contracts.EVENTS`),
  with only the fields that are set; times are ISO 8601 UTC text with a ``Z``, whole
  seconds: the ``email_sent`` rows at the send, every outcome strictly after it. Each
  outcome carries the campaign id and names the slot it belongs to, its content and
  that slot's decision id: the open and the unsubscribe the subject line's, the click
  and the purchase the offer's (a slot left out of ``decision_ids`` borrows the
  other's: any decision id of a send attributes an outcome to the send, see
  :func:`training.selector_data.attach_outcomes`); the checkout, as in the history,
  names no slot. Ids start with ``sim-``: no id of the historical log does.
- The outcome of a send is a function of the seed, the customer, the campaign and
  the send time: the same send answers the same events, whatever was asked before
  (the event ids are its idempotency keys), and two contents sent on the same
  occasion share their random numbers (common random numbers), so a better subject
  line opens every e-mail a worse one would have opened.
- Nothing is censored: the events of a send late in the simulated days lie in the
  future of the send; a caller posts each once its clock passes it. The send time
  must not be earlier than the decision's logged time, or measurement attributes
  nothing to it.

What it does not model: consent and unsubscribes are the service's to honour (an
e-mail to a record without consent, or one that unsubscribed, is answered like any
other); a record without a real address (no e-mail, or a placeholder) receives
nothing, so its send answers no event; the e-mail has no effect on browsing or on
organic purchases; stock after the simulated window, and inactive content
(``subj_09``), are outside the planted truth: a content id the simulator did not
plant raises.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from features.errors import InputError
from simulation.campaigns import (
    _active_subjects,
    _campaign_shop,
    _draw_outcomes,
    _Outcomes,
    _response_rates,
    _subject_effects,
)
from simulation.columns import _iso
from simulation.config import SimulationConfig
from simulation.parameters import _HOUR, _OFFERS, _SUBJECTS, _UNSUBSCRIBE_P
from simulation.store import SimulatedStore, _world

__all__ = ["Expectation", "Responder"]

_SLOTS = ("subject", "offer")


@dataclass(frozen=True)
class Expectation:
    """The true rates of one send (probabilities per send, revenue in currency units).

    Attributes
    ----------
    open : float
        P(open).
    click : float
        P(click) = P(open) * P(click | open).
    conversion : float
        P(purchase within the attribution window) = P(open) * P(purchase | open).
    unsubscribe : float
        P(unsubscribe) = P(open) * (1 - P(click | open)) * P(unsubscribe | opened, not
        clicked).
    revenue : float
        Expected price paid: ``conversion`` times the person's expected list price of a
        campaign purchase, less the offer's discount.
    """

    open: float
    click: float
    conversion: float
    unsubscribe: float
    revenue: float


class Responder:
    """Draws what a simulated customer does with an e-mail the service chose.

    Parameters
    ----------
    store : SimulatedStore
        What :func:`simulation.simulate` returned; its persons and catalog are drawn
        again from ``store.truth["config"]`` (their latent traits are in no table) and
        checked against its tables.
    seed : int
        Seed of the outcomes (non-negative); with the store, the only randomness.

    Raises
    ------
    InputError
        ``store`` is not what ``simulate(truth["config"])`` makes.
    """

    def __init__(self, store: SimulatedStore, *, seed: int = 0) -> None:
        if seed < 0:
            raise InputError("seed", seed, "must be a non-negative integer")
        self.seed = seed
        config = SimulationConfig.model_validate(store.truth["config"])
        _, cat, people = _world(config)
        ids = store.customers["customer_id"].to_numpy(dtype=object)
        if sorted(people.ids.tolist()) != ids.tolist() or not np.array_equal(
            cat.price, store.catalog["price"].to_numpy(dtype=float)
        ):
            raise InputError(
                "store", config.model_dump(mode="json"), "tables differ from what its config makes"
            )
        self._people = people
        self._shop = _campaign_shop(cat)
        self._window = config.attribution_hours * _HOUR
        self._record = {cid: r for r, cid in enumerate(people.ids.tolist())}
        self._subject = {_SUBJECTS[i][0]: k for k, i in enumerate(_active_subjects())}
        self._effects = _subject_effects()
        self._offer = {o[0]: k for k, o in enumerate(_OFFERS)}

    def expected(
        self, customer_id: str, sent_at: datetime, subject_id: str | None, offer_id: str | None
    ) -> Expectation:
        """Return the true rates of an e-mail to ``customer_id`` at ``sent_at`` with
        subject line ``subject_id`` and offer ``offer_id`` (all zero where the record
        has no real address).

        Raises
        ------
        InputError
            An unknown customer, a naive ``sent_at``, a content id the simulator did
            not plant, or ``None``.
        """
        r, per, send, subject, offer = self._send(customer_id, sent_at, subject_id, offer_id)
        if not self._people.has_email[r]:
            return Expectation(0.0, 0.0, 0.0, 0.0, 0.0)
        rates = _response_rates(self._people, per, send, self._effects[subject], offer)
        p_open, click, conversion = (
            float(v[0]) for v in (rates.open, rates.click, rates.conversion)
        )
        price = float(self._people.pref[per[0]] @ self._shop.category_price)
        paid = price * (1 - float(self._shop.discount[offer[0]]) / 100)
        return Expectation(
            open=p_open,
            click=p_open * click,
            conversion=p_open * conversion,
            unsubscribe=p_open * (1 - click) * _UNSUBSCRIBE_P,
            revenue=p_open * conversion * paid,
        )

    def respond(
        self,
        customer_id: str,
        campaign_id: str,
        sent_at: datetime,
        subject_id: str | None,
        offer_id: str | None,
        decision_ids: Mapping[str, str | None],
        propensities: Mapping[str, float] | None = None,
    ) -> list[dict[str, Any]]:
        """Draw the outcome events of one e-mail send.

        Parameters
        ----------
        customer_id : str
            The recipient, a customer id of the store.
        campaign_id : str
            The send's campaign (as passed in ``/choose``'s context).
        sent_at : datetime
            When the e-mail went out, timezone-aware.
        subject_id, offer_id : str
            The content the service chose: a subject line and an offer the simulator
            planted (``None`` raises: every e-mail has both; a holdout is served its
            slot's default content).
        decision_ids : mapping of str to str
            Slot (``subject``, ``offer``) -> the decision id ``/choose`` answered.
        propensities : mapping of str to float, optional
            Slot -> the propensity ``/choose`` answered. Given, the answer begins
            with the send's two ``email_sent`` rows (subject line, then offer, at
            ``sent_at``), each with its slot's decision id and its propensity where
            given: what training reads as a logged decision.

        Returns
        -------
        list of dict
            In time order: ``email_sent`` (with ``propensities``), ``email_open``,
            ``email_click``, ``checkout``, ``purchase``, ``unsubscribe``, each where it
            happened (no outcome where the e-mail was not opened).

        Raises
        ------
        InputError
            As for :meth:`expected`, or an unknown slot in ``decision_ids`` or
            ``propensities``.
        """
        r, per, send, subject, offer = self._send(customer_id, sent_at, subject_id, offer_id)
        by_slot: dict[str, dict[str, Any]] = {
            slot: {"slot": slot, "content_id": content, "channel": "email"}
            for slot, content in (("subject", subject_id), ("offer", offer_id))
        }
        for slot, decision in _decisions(decision_ids).items():
            if decision is not None:
                by_slot[slot]["decision_id"] = decision
        key = self._key(customer_id, campaign_id, int(send[0]))
        rows: list[tuple[str, str, np.ndarray, dict[str, Any]]] = []
        if propensities is not None:
            _slots("propensities", propensities)
            for slot, fields in by_slot.items():
                if slot in propensities:
                    fields = {**fields, "propensity": float(propensities[slot])}
                rows.append((f"sent-{slot}", "email_sent", send, fields))
        if self._people.has_email[r]:  # else the e-mail reaches nobody
            rng = np.random.default_rng(int(key, 16))
            out = _draw_outcomes(
                rng,
                self._people,
                per,
                send,
                self._effects[subject],
                offer,
                self._shop,
                self._window,
            )
            rows += _outcome_rows(out, by_slot, order_id=f"sim-{key[:20]}")
        events = [
            {
                "event_id": f"sim-{key[:20]}-{name}",
                "ts": _iso(int(ts[0])),
                "event_type": event_type,
                "customer_id": customer_id,
                "campaign_id": campaign_id,
                **fields,
            }
            for name, event_type, ts, fields in rows
        ]
        return sorted(events, key=lambda e: e["ts"])

    # ------------------------------------------------------------------ helpers
    def _send(
        self, customer_id: str, sent_at: datetime, subject_id: str | None, offer_id: str | None
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Record index, then (1,) arrays: person, send time (epoch s), subject, offer."""
        if customer_id not in self._record:
            raise InputError("customer_id", customer_id, "not a customer of the simulated store")
        if not isinstance(sent_at, datetime) or sent_at.tzinfo is None:
            raise InputError("sent_at", sent_at, "must be a timezone-aware datetime")
        subject = _content("subject_id", subject_id, self._subject)
        offer = _content("offer_id", offer_id, self._offer)
        r = self._record[customer_id]
        return (
            r,
            self._people.person[[r]],
            np.array([int(sent_at.timestamp() // 1)], np.int64),
            np.array([subject]),
            np.array([offer]),
        )

    def _key(self, customer_id: str, campaign_id: str, send: int) -> str:
        """Hex digest naming one send: the seed of its draws and of its ids."""
        text = "\x1f".join((str(self.seed), customer_id, campaign_id, str(send)))
        return hashlib.sha256(text.encode()).hexdigest()


def _content(field: str, content_id: str | None, index: Mapping[str, int]) -> int:
    if content_id is None:
        raise InputError(
            field,
            None,
            "every e-mail has a subject line and an offer: pass the content it was sent "
            "with (a holdout gets its slot's default content; no offer is 'offer_none')",
        )
    if content_id not in index:
        raise InputError(
            field,
            content_id,
            f"not a content id the simulator planted (expected one of {sorted(index)}): "
            "the service's default content must be one of the simulator's",
        )
    return index[content_id]


def _slots(field: str, by_slot: Mapping[str, Any]) -> None:
    unknown = sorted(set(by_slot) - set(_SLOTS))
    if unknown:
        raise InputError(field, unknown, f"unknown slots; expected {list(_SLOTS)}")


def _decisions(decision_ids: Mapping[str, str | None]) -> dict[str, str | None]:
    """Each slot's decision id; a slot without one borrows the other's."""
    _slots("decision_ids", decision_ids)
    subject, offer = decision_ids.get("subject"), decision_ids.get("offer")
    return {"subject": subject or offer, "offer": offer or subject}


def _outcome_rows(
    out: _Outcomes, by_slot: Mapping[str, dict[str, Any]], *, order_id: str
) -> list[tuple[str, str, np.ndarray, dict[str, Any]]]:
    """(id suffix, event type, (1,) epoch s, fields) of each outcome of one drawn send."""
    if not out.opened[0]:
        return []
    rows = [("open", "email_open", out.open_t, by_slot["subject"])]
    if out.clicked[0]:
        rows.append(("click", "email_click", out.click_t, by_slot["offer"]))
    if out.bought[0]:
        order = {"order_id": order_id, "channel": "web"}
        rows.append(("checkout", "checkout", out.buy_t - 1, order))
        purchase = {
            **by_slot["offer"],
            **order,
            "item_id": f"i{int(out.item[0]) + 1:06d}",
            "quantity": 1,
            "price": float(out.price[0]),
        }
        rows.append(("purchase", "purchase", out.buy_t, purchase))
    if out.left[0]:
        rows.append(("unsubscribe", "unsubscribe", out.leave_t, by_slot["subject"]))
    return rows
