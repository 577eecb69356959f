"""The wabot operator: WhatsAppBot resources → one pod (and its PVC, RBAC and Lease) per bot.

Pure modules (specs/: one builder per object; drift, decide, status, observe, templates,
config) hold every decision; kube.py and reconcile.py do the I/O; handlers.py wires them into
kopf; main.py runs it.
"""
