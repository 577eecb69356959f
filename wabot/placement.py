"""Where a bot's pod may run: tolerations and a core/v1 Affinity, typed and bounded.

Typed, not free-form: an untyped object let a spec nest 5,000 levels deep, which the API server
admitted and the operator's recursion could not survive.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from wabot.contract import SpecModel, crd

LabelValue = Annotated[str, Field(max_length=63)]


class Toleration(SpecModel):
    """A pod toleration, typed so the API server refuses a malformed one at apply time
    instead of the operator finding out when it creates the pod."""

    key: str | None = Field(default=None, max_length=317, description=(
        "The taint key; empty with operator Exists matches all taints."))
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (the default).")
    value: str | None = Field(default=None, max_length=63, description=(
        "The taint value the toleration matches (with Equal)."))
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint effect to match; empty matches all effects.")
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated before eviction.")


# The affinity types' bounds are wabot's (the API server's own types have none), wide enough for
# any placement a bot needs.
QualifiedName = Annotated[str, Field(min_length=1, max_length=317)]


_KEY = "The label (or field) key."
_OPERATOR = "How the key relates to the values."
_VALUES = "The values the operator compares with."
_REQUIREMENTS = "Requirements that must all hold."
_REQUIRED_TERMS = "Rules that must hold for the pod to be scheduled."
_PREFERRED_TERMS = "Rules the scheduler prefers, by weight."
_WEIGHT = "The weight of this preference, 1-100."


class NodeSelectorRequirement(SpecModel):
    key: QualifiedName = Field(description=_KEY)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        description=_OPERATOR)
    values: list[LabelValue] = Field(default_factory=list, max_length=64, description=_VALUES,
                                     json_schema_extra=crd(item="A value."))


class NodeSelectorTerm(SpecModel):
    match_expressions: list[NodeSelectorRequirement] = Field(
        default_factory=list, max_length=16, description=_REQUIREMENTS,
        json_schema_extra=crd(item="A requirement."))
    match_fields: list[NodeSelectorRequirement] = Field(
        default_factory=list, max_length=16,
        description="Requirements on node fields that must all hold.",
        json_schema_extra=crd(item="A requirement on a node field."))


class NodeSelector(SpecModel):
    node_selector_terms: list[NodeSelectorTerm] = Field(
        min_length=1, max_length=16, description="Node selector terms; any one matching is enough.",
        json_schema_extra=crd(item="A node selector term."))


class PreferredSchedulingTerm(SpecModel):
    weight: int = Field(ge=1, le=100, description=_WEIGHT)
    preference: NodeSelectorTerm = Field(
        description="The node selector term this preference is for.")


class NodeAffinity(SpecModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        default=None, description=_REQUIRED_TERMS)
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list, max_length=16, description=_PREFERRED_TERMS,
        json_schema_extra=crd(item="A weighted preference."))


class LabelSelectorRequirement(SpecModel):
    key: QualifiedName = Field(description=_KEY)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description=_OPERATOR)
    values: list[LabelValue] = Field(default_factory=list, max_length=64, description=_VALUES,
                                     json_schema_extra=crd(item="A value."))


class LabelSelector(SpecModel):
    match_labels: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=32, description="Labels that must all match exactly.",
        json_schema_extra=crd(value="The label value."))
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=16, description=_REQUIREMENTS,
        json_schema_extra=crd(item="A requirement."))


class PodAffinityTerm(SpecModel):
    label_selector: LabelSelector | None = Field(
        default=None, description="The pods this term is about, by label.")
    namespace_selector: LabelSelector | None = Field(
        default=None, description="The namespaces of those pods, by label.")
    namespaces: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=16,
        description="The namespaces of those pods; empty: the bot's own.",
        json_schema_extra=crd(item="A namespace name."))
    topology_key: QualifiedName = Field(description=(
        'The node label whose value defines "together" (e.g. kubernetes.io/hostname).'))
    match_label_keys: list[QualifiedName] = Field(
        default_factory=list, max_length=16, description=(
            "Label keys whose values are taken from the bot's pod to narrow labelSelector."),
        json_schema_extra=crd(item="A label key."))
    mismatch_label_keys: list[QualifiedName] = Field(
        default_factory=list, max_length=16,
        description="Label keys whose values must differ from the bot's pod's.",
        json_schema_extra=crd(item="A label key."))


class WeightedPodAffinityTerm(SpecModel):
    weight: int = Field(ge=1, le=100, description=_WEIGHT)
    pod_affinity_term: PodAffinityTerm = Field(
        description="The pod affinity term this preference is for.")


class PodAffinity(SpecModel):
    """podAffinity and podAntiAffinity have the same shape."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(
        default_factory=list, max_length=16, description=_REQUIRED_TERMS,
        json_schema_extra=crd(item="A pod affinity term."))
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(
        default_factory=list, max_length=16, description=_PREFERRED_TERMS,
        json_schema_extra=crd(item="A weighted preference."))


class Affinity(SpecModel):
    node_affinity: NodeAffinity | None = Field(
        default=None, description="Which nodes the pod may run on (core/v1 NodeAffinity).")
    pod_affinity: PodAffinity | None = Field(
        default=None, description="Pods this bot should run beside (core/v1 PodAffinity).")
    pod_anti_affinity: PodAffinity | None = Field(
        default=None,
        description="Pods this bot should run apart from (core/v1 PodAntiAffinity).")

    def to_pod(self) -> dict[str, object]:
        """As the pod spec takes it: unset and empty fields left out."""
        return self.model_dump(by_alias=True, exclude_defaults=True)
