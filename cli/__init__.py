"""The ``tailor`` command line: the top floor.

Packages flow one way, ``features → models → training → serving``, with ``simulation``
building on ``features``. The command line composes them all: it may import every
package, and no package imports it (a test walks the imports).

``cli.main`` holds the entry point (``tailor = "cli.main:main"``), the parser and the
dispatch; each other module is one group of commands: ``data`` (simulate, ingest,
features build), ``train`` (train recommender, train selector, promote), ``serve``
(serve, rules check), ``identity``, ``keys`` and ``demo``.
"""
