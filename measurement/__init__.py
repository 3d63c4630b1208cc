"""Measuring what was served: the statistics of experiments on the decisions made.

The package owns what happens after serving: the decision log joined to the outcomes
that followed (``outcomes``), the statistics of A/B tests and holdouts on that join
(``stats``: rates, means, power, always-valid p-values), and the reports built on
them (``tailor ab-report``, ``tailor report``). It reads the service's decision log
and the stored events as data; it builds on ``features``, ``models`` and ``training``,
never on ``serving``, and of the packages only the command line imports it.
"""
