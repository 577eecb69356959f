"""The committed WhatsAppBot CRD is the one wabot/crd.py generates from the spec model.

`kubectl apply -f crds/` and `helm install` read the committed files, not the models: a model
change that is not regenerated would leave the API server validating an older contract than
the operator and the tiers without Kubernetes. These tests fail on any byte of difference, and
check that the generator reads the models (types, bounds, defaults, the CRD-only overlay) the
way the API server's schema needs them.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import yaml
from pydantic import BaseModel, Field

from wabot import crd
from wabot.contract import cel
from wabot.contract import crd as overlay

REPO = Path(__file__).resolve().parents[2]
FIX = "run `python -m wabot.crd write` (or images/sync-chart-crds.sh) and commit the result"


@pytest.mark.parametrize("target", crd.TARGETS, ids=[str(t) for t in crd.TARGETS])
def test_committed_crd_is_the_generated_one(target: Path) -> None:
    committed = (REPO / target).read_text()
    if committed != crd.render():
        diff = "".join(crd.differences(REPO))
        pytest.fail(f"{target} is not what the models in wabot/ generate: {FIX}\n{diff[:4000]}")


def test_check_command_passes_on_the_committed_tree() -> None:
    out = subprocess.run([sys.executable, "-m", "wabot.crd", "--check"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr


def test_check_reports_a_hand_edit_and_write_repairs_it(tmp_path: Path) -> None:
    """What CI and the sync script rely on: a stale or edited copy is found, with a diff that
    shows the edit, and `write` restores both copies."""
    assert crd.write(tmp_path) == list(crd.TARGETS)
    assert crd.differences(tmp_path) == []
    edited = tmp_path / crd.TARGETS[1]
    edited.write_text(edited.read_text().replace("maxLength: 52", "maxLength: 60"))
    (diff,) = crd.differences(tmp_path)
    assert "-                  maxLength: 60" in diff
    assert "+                  maxLength: 52" in diff
    assert str(crd.TARGETS[1]) in diff
    assert crd.write(tmp_path) == [crd.TARGETS[1]]
    assert crd.differences(tmp_path) == []


def test_the_generated_crd_is_one_yaml_document_with_one_version() -> None:
    docs = list(yaml.safe_load_all(crd.render()))
    assert len(docs) == 1
    assert docs[0] == crd.crd()
    (version,) = docs[0]["spec"]["versions"]
    assert version["schema"]["openAPIV3Schema"]["properties"]["spec"]["required"] == [
        "serverName"]


# --- the generator on models of its own ----------------------------------------------------


class _Inner(BaseModel):
    flag: bool = Field(default=True, description="A flag.")


class _Probe(BaseModel):
    name: str = Field(pattern=r"^[a-z]+$", min_length=1, max_length=8, description="A name.",
                      json_schema_extra=overlay(rules=(cel("self == oldSelf", "immutable"),)))
    count: int = Field(default=3, ge=0, le=9, description="A count.")
    kind: Literal["a", "b"] | None = Field(default=None, description="A kind.")
    tags: list[Annotated[str, Field(max_length=4)]] = Field(
        default_factory=lambda: ["x"], max_length=2, description="Tags.",
        json_schema_extra=overlay(item="A tag.", list_type="set"))
    labels: dict[str, str] = Field(default_factory=dict, max_length=5, description="Labels.",
                                   json_schema_extra=overlay(value="A label value."))
    inner: _Inner = Field(default_factory=_Inner, description="Nested.",
                          json_schema_extra=overlay(properties={"flag": "Overridden."}))
    at: datetime | None = Field(default=None, description="When.")


def test_generator_turns_a_model_into_a_structural_schema() -> None:
    schema = crd.model_schema(_Probe)
    assert schema["required"] == ["name"]
    props: dict[str, Any] = schema["properties"]
    assert props["name"] == {
        "type": "string", "description": "A name.", "pattern": "^[a-z]+$", "minLength": 1,
        "maxLength": 8,
        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]}
    assert props["count"] == {"type": "integer", "description": "A count.", "minimum": 0,
                              "maximum": 9, "default": 3}
    # None means "absent" to the API server: no default is written for it
    assert props["kind"] == {"type": "string", "enum": ["a", "b"], "description": "A kind."}
    assert props["tags"] == {
        "type": "array", "maxItems": 2, "description": "Tags.", "default": ["x"],
        "x-kubernetes-list-type": "set",
        "items": {"type": "string", "maxLength": 4, "description": "A tag."}}
    assert props["labels"] == {
        "type": "object", "maxProperties": 5, "description": "Labels.",
        "additionalProperties": {"type": "string", "description": "A label value."}}
    # a nested model defaults to {}: the API server then fills in its fields' own defaults
    assert props["inner"]["default"] == {}
    assert props["inner"]["properties"]["flag"] == {
        "type": "boolean", "description": "Overridden.", "default": True}
    assert props["at"] == {"type": "string", "format": "date-time", "description": "When."}


def test_generator_refuses_what_it_cannot_express() -> None:
    """A new field type or constraint must not be dropped from the CRD silently."""

    class Union(BaseModel):
        either: int | str

    class Float(BaseModel):
        ratio: float

    class MultipleOf(BaseModel):
        step: int = Field(multiple_of=5)

    for model in (Union, Float, MultipleOf):
        with pytest.raises(TypeError):
            crd.model_schema(model)
