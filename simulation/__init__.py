"""Seeded synthetic store: customers, catalog, content and an event log with planted truth.

The simulator is the demo's data and the test bed of every later stage, so it plants
ground truth that downstream code must recover and records all of it in
``SimulatedStore.truth`` (a :class:`~simulation.truth.Truth`, written as ``truth.json``):

- each customer's latent category preferences (one clearly preferred category),
  price sensitivity, activity level and type (``bargain_hunter``,
  ``convenience_seeker``, ``brand_loyal``), none of which appear in the tables;
- who is who, as a real CRM export has it (drawn by :mod:`simulation.identities`):
  name, date of birth, address, postcode and city in ``attributes``; the same person
  under two customer records (email re-cased / padded, phone re-formatted, and on
  top name typos, moves, and fuzzy duplicates that share no email or phone);
  placeholder emails, household landlines and the shop's phone shared by records of
  different persons; anonymous sessions linked by a ``login`` event, shared devices;
- a browse funnel with realistic rates (product view -> cart about 9 %, cart ->
  purchase about 35 %), price-sensitive browsing (the more price-sensitive, the more
  often a shopper opens the cheapest item of a listing rather than the priciest) and
  purchasing, abandoned carts, repeat buyers, lapsing customers and stock-outs;
- email campaigns whose subject line and offer are chosen by a known, non-uniform
  randomised logging policy with logged propensities, and whose opens, clicks and
  purchases follow closed-form models (subject-trait effects on opening, offer x
  customer-type conversion), so any policy's true value can be computed from
  ``truth``;
- a share of malformed rows, each listed with its kind and row index.

Conventions
-----------
- Time is whole UTC seconds. The simulated window is ``[start, start + days)``;
  nothing is logged at or after its end (email outcomes that would fall later are
  censored, as in a real export).
- ``events.ts`` is text (ISO 8601, ``Z`` suffix), because the log is raw input and
  a planted ``bad_timestamp`` row must be able to hold ``"yesterday"``. Events are
  sorted by time (malformed rows sit at the time of the row they were copied from)
  and ``event_id`` is ``"e"`` plus the zero-padded 1-based row number.
- Malformed rows are extra copies of real ``product_view`` (or ``page_view``) rows
  with exactly one defect, so quarantining them leaves the simulated world intact.
- ``stock_change`` rows carry no customer: ``customer_id`` is null and
  ``anonymous_id`` is the reserved id ``"inventory"`` (:data:`INVENTORY_ID`), which
  never logs in. ``properties`` is ``{"in_stock": false}`` or ``{"in_stock": true}``.
- The catalog's ``in_stock`` is the state at ``start``; the state at any later time
  is that plus the ``stock_change`` events before it.
- ``customers`` is the number of customer *records*; persons with two records
  (``duplicate_person_share``) make up the difference, so there are
  ``customers - len(truth["identity_links"])`` persons.
- Per-customer truth (``preferred_category``, ``customer_type``, ...) is keyed by
  every customer id; both records of one person carry the person's values.
- Placeholder emails are no addresses: their records receive no campaign email.

Everything is vectorised with numpy / Arrow; Python loops run over campaigns only.

The simulator is a fixture that *produces* data in the contracts' formats
(:mod:`features.data.contracts`): it imports from ``features`` and nothing above it, and
only the command line (``tailor simulate``, ``tailor demo``), the tests and the
benchmarks import it.

Modules
-------
- :mod:`simulation.config`: :class:`SimulationConfig`, everything that shapes a store.
- :mod:`simulation.parameters`: the planted parameters, and :data:`DEMO_RULES_FILE`.
- :mod:`simulation.columns`: internal event rows as numpy code blocks, Arrow text.
- :mod:`simulation.catalog`: items, prices, stock-outs; drawing items.
- :mod:`simulation.people`: persons and their records' latent traits and consent;
  :mod:`simulation.identities` and :mod:`simulation.contact_details`: who is who, and
  how their contact details are written and misspelt.
- :mod:`simulation.browsing`: sessions and the browse funnel.
- :mod:`simulation.campaigns`: email campaigns, the logging policy, the content table.
- :mod:`simulation.defects`: the planted malformed rows.
- :mod:`simulation.store`: :func:`simulate`, the assembly and its recorded truth;
  :mod:`simulation.truth`: the truth's documented type.
- :mod:`simulation.writing`: :func:`write_store`.
- :mod:`simulation.responses`: :class:`Responder`, the store's response to an e-mail the
  decision service chose (its outcome events and their true rates).
"""

from simulation.campaigns import subject_traits
from simulation.config import SimulationConfig
from simulation.contact_details import PLACEHOLDER_EMAILS
from simulation.parameters import (
    CUSTOMER_TYPES,
    DEMO_RULES_FILE,
    INVENTORY_ID,
    MALFORMED_KINDS,
    SUBJECT_TRAITS,
)
from simulation.responses import Expectation, Responder
from simulation.store import SimulatedStore, simulate
from simulation.truth import Truth
from simulation.writing import write_store

__all__ = [
    "CUSTOMER_TYPES",
    "DEMO_RULES_FILE",
    "INVENTORY_ID",
    "MALFORMED_KINDS",
    "PLACEHOLDER_EMAILS",
    "SUBJECT_TRAITS",
    "Expectation",
    "Responder",
    "SimulatedStore",
    "SimulationConfig",
    "Truth",
    "simulate",
    "subject_traits",
    "write_store",
]
