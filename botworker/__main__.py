"""`python -m botworker`: the worker role without the `wabot` role switch."""

from botworker.main import main

main()
