"""The worker's pure core: decisions without I/O (no sockets, files, threads started or clocks
read here: callers pass `now`). Everything in it is unit-tested without a cluster or a network,
and nothing in it imports `adapters`, `runtime` or neonize."""
