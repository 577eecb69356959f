"""The book of bot identities (serverName, botId) per namespace: of two bots of one identity,
the oldest runs; renaming, deleting and the default botId all count (issue 22, defect 3)."""

from __future__ import annotations

from typing import Any

from wabot_operator.identities import IdentityBook, identity


def bot(name: str, created: str, ns: str = "ns", server: str = "acme",
        bot_id: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"serverName": server}
    if bot_id is not None:
        spec["botId"] = bot_id
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": spec}


def test_the_default_bot_id_is_the_name() -> None:
    assert identity(bot("shared", "t")) == ("ns", "acme", "shared")
    assert identity(bot("other", "t", bot_id="shared")) == ("ns", "acme", "shared")
    assert identity({"metadata": {"name": "x", "namespace": "ns"}, "spec": {}}) is None


def test_the_oldest_holder_runs_and_the_next_one_follows_when_it_goes() -> None:
    book = IdentityBook()
    assert book.seen(bot("shared", "2026-01-01T00:00:05Z")) == []
    # The second one tells who may now be affected: the first.
    assert book.seen(bot("copy", "2026-01-01T00:00:09Z", bot_id="shared")) == ["shared"]
    assert book.earlier("ns", "shared") is None
    assert book.earlier("ns", "copy") == "shared"
    # Another tenant, or another namespace, is another identity.
    book.seen(bot("shared", "2026-01-01T00:00:01Z", ns="other"))
    book.seen(bot("g", "2026-01-01T00:00:01Z", server="globex", bot_id="shared"))
    assert book.earlier("other", "shared") is None and book.earlier("ns", "g") is None
    assert book.gone("ns", "shared") == ["copy"]
    assert book.earlier("ns", "copy") is None


def test_same_second_new_bots_go_by_who_was_seen_first() -> None:
    book = IdentityBook()
    book.seen(bot("b", "2026-01-01T00:00:00Z", bot_id="x"))
    book.seen(bot("a", "2026-01-01T00:00:00Z", bot_id="x"))
    book.seen(bot("b", "2026-01-01T00:00:00Z", bot_id="x"))  # a later event of b
    assert book.earlier("ns", "a") == "b" and book.earlier("ns", "b") is None
    assert book.gone("ns", "missing") == []


def test_within_a_second_the_bot_that_already_ran_keeps_running() -> None:
    """creationTimestamp has one-second resolution: a copy made in the same second as a
    running bot must not take over because its name sorts first, now or after a restart."""
    book = IdentityBook()
    running = bot("shared", "2026-01-01T00:00:00Z")
    running["status"] = {"phase": "Connected"}
    book.seen(running)
    copy = bot("copy", "2026-01-01T00:00:00Z", bot_id="shared")
    book.seen(copy)
    assert book.earlier("ns", "copy") == "shared" and book.earlier("ns", "shared") is None
    copy["status"] = {"phase": "Failed", "conditions": [
        {"type": "Degraded", "status": "True", "reason": "DuplicateBotId"}]}
    restarted = IdentityBook()
    restarted.seen(copy)
    restarted.seen(running)
    assert restarted.earlier("ns", "copy") == "shared"
    # Even when the winner's first status was never written before the restart.
    del running["status"]
    restarted = IdentityBook()
    restarted.seen(copy)
    restarted.seen(running)
    assert restarted.earlier("ns", "copy") == "shared"
