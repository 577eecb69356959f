"""The worker's logs never carry a user's message: neonize logs a whole protobuf when it cannot
build a quoted reply, and that record must come out without the content."""

from __future__ import annotations

import io
import json
import logging

from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

from botworker.logs import configure_logging


def test_a_protobuf_logged_by_neonize_is_withheld() -> None:
    stream = io.StringIO()
    configure_logging("shop", "acme", stream=stream)
    secret_text = "my card number is 4111 1111 1111 1111"
    message = Message(conversation=secret_text)
    logging.getLogger("neonize.client").warning("@_make_quoted_message; Couldn't clear the "
                                                "contextInfo of:")
    logging.getLogger("neonize.client").warning(message)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert secret_text not in stream.getvalue()
    assert lines[-1]["msg"] == "<Message withheld: message content is not logged>"
    assert lines[-1]["bot"] == "shop" and lines[-1]["server_name"] == "acme"
    # Plain text records of neonize are untouched.
    assert "Couldn't clear the contextInfo" in lines[-2]["msg"]


def test_configuring_twice_does_not_stack_filters() -> None:
    configure_logging("shop", "acme", stream=io.StringIO())
    configure_logging("shop", "acme", stream=io.StringIO())
    assert len(logging.getLogger("neonize.client").filters) == 1
