"""Plugins shipped with the worker, registered in the `wabot.plugins` entry-point group."""
