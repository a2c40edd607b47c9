"""``python -m dalv``: see ``dalv.cli``."""

from dalv.cli import main

raise SystemExit(main())
