"""``python -m bench.soak``: see :mod:`bench.soak` and :mod:`bench.soak.cli`."""

from .cli import main

raise SystemExit(main())
