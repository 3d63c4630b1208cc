"""Check the service's rules before it starts: ``python -m serving.preflight``.

``tailor serve`` (and ``tailor rules check``) run this first, with the settings the
service will get: it compiles the rules file against the newest snapshot's feature
names and checks every content id it names against the store's active content, as
the service does when it loads. A problem exits 2 naming the rule, so a rules file
naming unknown content stops ``tailor serve`` instead of starting a service that
refuses to decide.
"""

from __future__ import annotations

import sys

import pyarrow.parquet as pq
from pydantic import ValidationError

from features.data.store import EventStore
from features.errors import NotFoundError, TailorError
from features.snapshot import latest_snapshot
from serving.bundle_data import active_content, content_by_slot
from serving.rules import DEFAULT_RULES_FILE, RuleSet, check_content, load_rules
from serving.settings import ServiceSettings


def snapshot_feature_names(settings: ServiceSettings) -> set[str]:
    """Customer feature names of the newest snapshot (none without one), as the
    service reads them."""
    try:
        path = latest_snapshot(settings.features_dir)
    except NotFoundError:
        return set()
    return set(pq.read_schema(path / "customers.parquet").names)


def check_rules(settings: ServiceSettings) -> RuleSet:
    """The service's rules, compiled and checked against the active content.

    Raises
    ------
    InputError
        Naming the file and each rule, default or segment default at fault.
    """
    rules = load_rules(settings.serving.rules_file, snapshot_feature_names(settings))
    content = content_by_slot(active_content(EventStore(settings.store_dir)))
    check_content(rules, content, source=str(settings.serving.rules_file or DEFAULT_RULES_FILE))
    return rules


def main() -> int:
    try:
        settings = ServiceSettings()
        rules = check_rules(settings)
    except ValidationError as error:
        print(f"tailor: invalid configuration:\n{error}", file=sys.stderr)
        return 2
    except TailorError as error:
        print(f"tailor: {error}", file=sys.stderr)
        return 2
    source = settings.serving.rules_file or f"{DEFAULT_RULES_FILE} (packaged)"
    defaults = ", ".join(f"{k}={v}" for k, v in rules.defaults.items()) or "none"
    print(f"rules: {len(rules.rules)} from {source}; slot defaults: {defaults}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
