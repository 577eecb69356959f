"""The `wabot` command line: above every tier, so the shared package `wabot` imports none.

`commands.py` holds the one table of commands (each role of the image, and `db`) and the `ROLE`
switch. It runs as the `wabot` console script (pyproject.toml) or `python -m wabot_cli`;
`python -m wabot` is an alias that replaces itself with the latter (wabot/__main__.py).
"""
