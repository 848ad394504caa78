"""``python -m tasks.standins``: write dataset stand-ins (tasks/standins/__init__.py)."""

import sys

from tasks.standins import main

sys.exit(main())  # type: ignore[call-arg]
