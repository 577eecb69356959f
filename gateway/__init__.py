"""The send-message gateway: a small stateless HTTP service in front of the bots' workers.

It authenticates a tenant's API key, finds the named WhatsAppBot and its pod, and forwards the
request to the worker's POST /v1/messages with the bot's own token. See gateway/openapi.yaml
and the README ("Sending a message").
"""

__version__ = "0.1.0"
