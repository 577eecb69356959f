"""The worker's adapters: every conversation with something outside the process (the API
server, webhook receivers, the database, the state file beside the session). They use the
pure `core` for their decisions and never import `runtime`."""
