"""The wabot operator: WhatsAppBot resources → one pod (and its PVC, RBAC and Lease) per bot.

Where each thing happens:
- specs/: a spec becomes each object (pure, one builder per kind).
- reconcile.py: one pass over one bot, step by step; it applies the supporting objects through
  apply.py, acts on the pod through podcontrol.py and writes status through statuswrite.py.
- Pure decisions: decide (the pod's action), drift, status, policy (the admin's allow-lists),
  pacing, observe, templates, config.
- I/O: clients.py (every connection to the API server), kube.py (its requests), scope.py
  (namespaces, start-up listings, peering), and the caches inventory, facts, podbook and
  identities.
- handlers.py wires them into kopf; main.py runs it.
"""
