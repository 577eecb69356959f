"""The running bot: the WhatsApp session (neonize), the message pipeline, the sender and the
HTTP servers it answers on. `botworker.worker` wires these to the adapters and the core."""
