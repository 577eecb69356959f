"""botworker: one WhatsApp bot in one process, on neonize (the `ROLE=worker` of wabot).

Importing this package is cheap: neonize, the Kubernetes client and the database layer are
imported only by the modules that need them, when they are needed.
"""

from __future__ import annotations

__version__ = "0.1.0"
