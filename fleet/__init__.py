"""fleet: the seed's tiers without Kubernetes, on the worker's unchanged per-bot code path.

- `ROLE=monolith` (Tier 1): one command, many bots, one OS process per bot (neonize aborts a
  process that hosts several clients), one HTTP endpoint for health, metrics and the bot list.
- `ROLE=controller` (Tier 2): N worker-group processes, each a supervisor of a stable subset of
  bots, behind a token-protected HTTP API.
- `python -m fleet compose` (Tier 3, the seed's Docker Compose option) and
  `python -m fleet migrate` (from a monolith's auth dirs to WhatsAppBot objects and PVCs).

This module imports nothing: `python -m fleet.child` runs in front of every bot process and
must stay cheap.
"""
