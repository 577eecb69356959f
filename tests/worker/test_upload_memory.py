"""A bot sends the largest files its API accepts within the memory limit the chart gives it by
default (issue 28), and takes in the largest file spec.media.download accepts.

The real worker process (`python -m wabot worker`, spec from a file, SQLite: its start-up
child runs in the same cgroup) runs in a memory cgroup whose limit is exactly the built-in
default (wabot/spec.py DEFAULT_RESOURCES, which the chart keeps): above it the kernel
OOM-kills, as it would the container. Files go through the worker's API with its token; the
one seam is neonize's `upload` past its Go half (whatsmeow copies and encrypts the file for
real, then cannot reach the media servers) and `download_any` (bench/_upload_hooks).
The peaks themselves are printed by `python -m bench.upload_peak`; this test only says the
limit holds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.cgroup import MemoryCgroup
from bench.upload_peak import (
    MIB,
    cases,
    downloading,
    file_server,
    send_case,
    started_bot,
    together,
)
from wabot.spec import DEFAULT_RESOURCES


def default_limit_mib() -> int:
    memory = DEFAULT_RESOURCES.limits.memory
    assert memory is not None
    m = re.fullmatch(r"([0-9]+)Mi", memory)
    assert m, f"the default memory limit {memory!r} is not in Mi"
    return int(m.group(1))


@pytest.fixture
def cgroups() -> None:
    probe = MemoryCgroup.create("wabot-test-probe")
    if probe is None:
        pytest.skip("no memory cgroup can be made here (needs the cgroup memory controller)")
    probe.remove()


def test_the_largest_files_fit_the_default_memory_limit(cgroups: None, tmp_path: Path) -> None:
    """One worker, one file after another (what it keeps from one send is there for the
    next): the largest document by upload and by URL, the media budget's most at once (48 MiB
    of files), then the largest received file spec.media.maxBytes allows (64 MiB, stored)."""
    limit = default_limit_mib()
    todo = cases(tmp_path, url=True)
    doc32 = next(c for c in todo if c[0] == "multipart document 32 MiB")
    video = next(c for c in todo if c[0].startswith("multipart video"))
    url_doc = next(c for c in todo if c[0] == "URL document 32 MiB")
    assert len(video[2]) <= 16 * MIB and len(doc32[2]) == 32 * MIB  # the kinds' limits
    with file_server({"doc": url_doc[2]}) as base, \
            started_bot(tmp_path / "bot", limit) as bot:
        assert bot.cgroup is not None
        steps = {
            "one 32 MiB document": send_case(bot, doc32, ""),
            "the same by URL": send_case(bot, url_doc, f"{base}/doc"),
            "a 32 MiB document and a 16 MiB video at once":
                together(bot, [(doc32, ""), (video, "")]),
            "three 16 MiB videos at once": together(bot, [(video, "")] * 3),
        }
        for what, act in steps.items():
            status, body = act()
            assert status == 200, f"{what}: {status} {body}"
        status, answer = downloading(bot, 64 * MIB)()
        assert status == 200, f"a received 64 MiB document: {answer}"
        assert bot.proc.alive() and bot.cgroup.oom_kills() == 0
