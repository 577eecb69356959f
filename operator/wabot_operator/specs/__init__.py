"""Pure builders, one module per object a bot owns: a WhatsAppBot (name, namespace, uid,
validated spec) + the operator's defaults + the templates -> the exact object it should have.

No I/O here, so every rule about what a bot's pod, PVC or Role looks like is tested without a
cluster (tests/operator/unit/test_render.py, and the golden files of
tests/operator/unit/test_render_golden.py), and the apply layer only compares and sends.
`children.render_children` builds them all.
"""
