"""Helpers shared by the tests and the benchmarks (bench/ imports them too): `net` for loopback
ports and HTTP status probes, `polling` for waiting on a condition with a deadline."""
