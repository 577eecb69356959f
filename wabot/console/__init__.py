"""What every tier's web console shares (issue 27): the gateway serves it from the
WhatsAppBot objects, the monolith and the controller from their workers' /v1/session.

- views.py: what a page shows of a bot, in plain words, from a WhatsAppBot-shaped object (pure);
- session.py: signed session cookies and CSRF tokens (pure);
- qr.py: the pairing QR drawn as SVG by segno;
- static/: the page shell, its scripts and its style (no external asset, no inline script),
  read by each tier with importlib.resources.
"""
