"""The sample WhatsAppBots in samples/ are valid for the shared model (and so for every tier),
and the CRD's list of reserved env names is the model's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from wabot.spec import RESERVED_ENV_NAMES, WhatsAppBotSpec

REPO = Path(__file__).resolve().parents[2]
SAMPLES = ["support-bot.yaml", "sales-bot.yaml", "paused-bot.yaml"]


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_is_a_valid_bot(name: str) -> None:
    docs = list(yaml.safe_load_all((REPO / "samples" / name).read_text()))
    assert docs and all(d["kind"] == "WhatsAppBot" for d in docs)
    for doc in docs:
        assert "namespace" not in doc["metadata"]  # applied with -n by scripts/up.sh
        WhatsAppBotSpec.model_validate(doc["spec"])


def test_crd_reserved_env_rule_lists_the_models_names() -> None:
    crd = yaml.safe_load((REPO / "crds" / "whatsappbot.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    item = schema["properties"]["spec"]["properties"]["env"]["items"]
    (rule,) = item["x-kubernetes-validations"]
    listed = rule["rule"].split("[", 1)[1].split("]", 1)[0]
    assert [n.strip().strip("'") for n in listed.split(",")] == list(RESERVED_ENV_NAMES)
