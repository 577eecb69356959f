"""The `wabot` command line: above every tier, so the shared package `wabot` imports none.

`commands.py` holds the one table of commands (each role of the image, and `db`) and the `ROLE`
switch; `python -m wabot` hands over to it by name (wabot/__main__.py).
"""
