"""``python -m ide_broker.develop``: same as ``kiln develop``."""

from .server import main

raise SystemExit(main())
