"""``python -m bench.fleet``: see :mod:`bench.fleet` and :mod:`bench.fleet.cli`."""

from .cli import main

raise SystemExit(main())
