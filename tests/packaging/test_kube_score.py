"""kube-score on what the default chart installs and on a bot pod as the operator renders it.

kube-score (github.com/zegl/kube-score, built with the control plane's tools by
devcluster/build-tools.sh at the version in devcluster/versions.env) is what a reviewer or an
admission scanner would run on these manifests. Every CRITICAL finding must be one of IGNORED,
each explained in the chart README ("What kube-score still reports, and why"); an entry that
no longer matches anything fails too, so the list cannot outlive its reason.

The bot pod is scored together with the chart's objects for its namespace (the release
namespace, which the default chart watches): that is where its NetworkPolicy comes from.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.conftest import CHART, find, render

RELEASE_NAMESPACE = "wabot-system"
CRITICAL = 1  # kube-score's grades: 1 critical, 5 warning, 7 almost OK, 10 OK
README = CHART / "README.md"


@dataclass(frozen=True)
class Ignored:
    """One accepted CRITICAL finding: kube-score's check id, the objects (a regex on its
    `Kind/group/version/namespace/name`) and the start of the finding's summary."""

    check: str
    objects: str
    summary: str

    def matches(self, object_name: str, check: str, summary: str) -> bool:
        return (check == self.check and re.fullmatch(self.objects, object_name) is not None
                and summary.startswith(self.summary))


# Each is explained in the chart README under the check id.
IGNORED = (
    # IfNotPresent: digests (image.digest) make it exact, and a pod start never waits on the
    # registry; kind-loaded images work. Always is one value away (image.pullPolicy).
    Ignored("container-image-pull-policy", r"(Deployment/apps/v1|Pod/v1)/.*",
            "ImagePullPolicy is not set to Always"),
)


def kube_score() -> Path:
    try:
        from devcluster.tools import find_tools

        path = find_tools(build=False).bin_dir / "kube-score"
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        pytest.fail(f"no kube-score: run devcluster/build-tools.sh ({e})", pytrace=False)
    return path


def bot_pod(namespace: str, worker_image: str) -> dict[str, Any]:
    """A bot's pod exactly as the operator makes it from the chart's default templates."""
    from wabot_operator.specs.bot import BotRef, RenderDefaults
    from wabot_operator.specs.children import render_children
    from wabot_operator.templates import load_templates

    from wabot.spec import WhatsAppBotSpec

    children = render_children(
        BotRef(name="support", namespace=namespace, uid="0b5e3c1e-1111-2222-3333-444455556666"),
        WhatsAppBotSpec.model_validate({"serverName": "acme"}),
        RenderDefaults(worker_image=worker_image),
        load_templates(CHART / "files" / "bot-templates"))
    assert children.pod is not None
    return children.pod


def score(objects: list[dict[str, Any]]) -> list[tuple[str, str, int, str]]:
    """(object, check id, grade, summary) of every finding below OK."""
    out = subprocess.run([str(kube_score()), "score", "--output-format", "json", "-"],
                         input=yaml.safe_dump_all(objects), capture_output=True, text=True,
                         timeout=120)
    # Exit status 1 means "found something critical": the findings are read from the JSON.
    assert out.returncode in (0, 1), out.stderr
    findings = []
    for obj in json.loads(out.stdout):
        for check in obj["checks"]:
            if check["skipped"] or check["grade"] >= 10:
                continue
            for comment in check["comments"] or [{"summary": ""}]:
                findings.append((obj["object_name"], check["check"]["id"], check["grade"],
                                 comment["summary"]))
    return findings


def manifests(sets: dict[str, str]) -> list[dict[str, Any]]:
    """What the chart installs with these values, plus a bot pod in the watched namespace."""
    objects = render(namespace=RELEASE_NAMESPACE, sets=sets)
    operator = find(objects, "Deployment", "wabot-wabot-operator")
    env = {e["name"]: e.get("value")
           for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WABOT_OPERATOR_NAMESPACES"] == RELEASE_NAMESPACE
    return [*objects, bot_pod(RELEASE_NAMESPACE, env["WABOT_OPERATOR_WORKER_IMAGE"])]


def test_kube_score_finds_nothing_critical_but_the_documented() -> None:
    """Before issue 21 this reported, on the default chart and a bot pod: no NetworkPolicy for
    the operator, the gateway or the bots, no PodDisruptionBudget for the gateway, the same
    readiness and liveness probe on the operator, no ephemeral-storage requests or limits and
    no CPU limit on the operator and the gateway."""
    used: set[Ignored] = set()
    unexplained = []
    for sets in ({}, {"gateway.enabled": "true"}):
        for name, check, grade, summary in score(manifests(sets)):
            if grade > CRITICAL:
                continue
            hits = [i for i in IGNORED if i.matches(name, check, summary)]
            used.update(hits)
            if not hits:
                unexplained.append(f"{name}: {check}: {summary} (values {sets})")
    assert not unexplained, "kube-score CRITICAL:\n" + "\n".join(unexplained)
    stale = [i for i in IGNORED if i not in used]
    assert not stale, f"no longer reported, drop from IGNORED and the chart README: {stale}"


def test_every_ignored_finding_is_explained_in_the_chart_readme() -> None:
    text = README.read_text()
    section = text[text.index("## What kube-score still reports, and why"):]
    for ignored in IGNORED:
        assert f"`{ignored.check}`" in section, f"{ignored.check} is not explained in {README}"
