"""A bot's chat commands in its spec (`spec.commands`): the prefix, the built-ins it answers,
the custom commands with a fixed text, image, document or location, and the plugins it loads.
Part of the WhatsAppBot contract (wabot/spec.py holds the whole spec; the CRD is generated
from both by wabot/crd.py); the worker's command registry (botworker/core/registry.py) reads
them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from wabot.contract import SpecModel, cel, crd

# ASCII on purpose: the API server checks CRD patterns with RE2, where \w is ASCII only, and a
# small class keeps pydantic's compiled validator small (a Unicode \w{1,32} costs ~6 MB of RSS).
COMMAND_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
# Plugin entry-point names (the `wabot.plugins` group); dots allow namespaced names.
PLUGIN_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
# A command prefix has no whitespace. Not `\S`: the API server evaluates CRD patterns with Go's
# RE2, whose \s is ASCII (and leaves out \v), while pydantic's Rust regex has Unicode \s, so a
# prefix of U+00A0 or U+3000 passed `kubectl apply` and the operator then refused the spec.
# The Unicode White_Space characters are listed instead (the \s of pydantic's engine), with
# escapes both engines read alike; the CRD carries this very string (tests/contract/
# test_crd_patterns.py checks both engines over every code point).
PREFIX_PATTERN = (
    r"^[^\t\n\v\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}"
    r"\x{3000}]+$"
)


BuiltinCommand = Literal["help", "menu", "ping", "info"]
ALL_BUILTINS: tuple[BuiltinCommand, ...] = ("help", "menu", "ping", "info")


CommandName = Annotated[str, Field(pattern=COMMAND_NAME_PATTERN, min_length=1, max_length=32)]
PluginName = Annotated[str, Field(pattern=PLUGIN_NAME_PATTERN)]


class CustomMedia(SpecModel):
    """A file a custom command answers with, downloaded when the command runs (under the same
    egress policy as webhooks: public addresses only) and checked against WhatsApp's limits."""

    url: str = Field(max_length=2048, pattern=r"^https?://[!-~]+$",
                     description="The http(s) URL of the file.")
    caption: str | None = Field(default=None, min_length=1, max_length=1024,
                                description="Shown under the image or document.")
    file_name: str | None = Field(default=None, min_length=1, max_length=255,
                                  pattern=r"^[^\x00-\x1f\x7f/\\]+$",
                                  description="Documents: the name the recipient sees.")


# Decimal degrees as strings, as Kubernetes' API conventions ask of non-integers: a float in
# a CRD does not survive every client's round trip unchanged.
_DEGREES = r"^-?[0-9]{1,3}(\.[0-9]{1,10})?$"


class CustomLocation(SpecModel):
    latitude: str = Field(pattern=_DEGREES, max_length=16,
                          description="Degrees north, -90 to 90 (for example \"52.5200\").")
    longitude: str = Field(pattern=_DEGREES, max_length=16,
                           description="Degrees east, -180 to 180 (for example \"13.4050\").")
    name: str | None = Field(default=None, min_length=1, max_length=256,
                             pattern=r"^[^\x00-\x1f\x7f]+$", description="The place's name.")
    address: str | None = Field(default=None, min_length=1, max_length=512,
                                pattern=r"^[^\x00-\x1f\x7f]+$", description="Its address.")

    @model_validator(mode="after")
    def _range(self) -> CustomLocation:
        if not -90 <= float(self.latitude) <= 90:
            raise ValueError("latitude: -90 to 90")
        if not -180 <= float(self.longitude) <= 180:
            raise ValueError("longitude: -180 to 180")
        return self


_CUSTOM_ANSWERS = ("response", "image", "document", "location")


class CustomCommand(SpecModel):
    name: CommandName = Field(description="The command's name, typed after the prefix.")
    aliases: list[CommandName] = Field(
        default_factory=list, max_length=10, description="Other names that run the same command.",
        json_schema_extra=crd(item="An alias of the command."))
    response: str | None = Field(default=None, min_length=1, max_length=4096, description=(
        "The text the bot replies with (first, when an image, document or location goes "
        "with it)."))
    image: CustomMedia | None = Field(default=None, description=(
        "An image (JPEG or PNG, up to 5 MiB) the bot replies with."))
    document: CustomMedia | None = Field(default=None, description=(
        "A document (any file, up to the worker's document limit) the bot replies with."))
    location: CustomLocation | None = Field(default=None, description=(
        "A location pin the bot replies with."), json_schema_extra=crd(rules=(cel(
            "double(self.latitude) >= -90.0 && double(self.latitude) <= 90.0 && "
            "double(self.longitude) >= -180.0 && double(self.longitude) <= 180.0",
            "latitude is -90 to 90 and longitude -180 to 180"),)))
    description: str = Field(default="", max_length=200,
                             description="One line shown by help/menu.")

    @model_validator(mode="after")
    def _answers(self) -> CustomCommand:
        if all(getattr(self, a) is None for a in _CUSTOM_ANSWERS):
            raise ValueError("a custom command needs a response, image, document or location")
        if self.image is not None and self.image.file_name is not None:
            raise ValueError("image.fileName: only a document has a file name")
        return self


class CommandsSpec(SpecModel):
    prefix: str = Field(default="!", min_length=1, max_length=3, pattern=PREFIX_PATTERN,
                        description=(
                            "The characters that start a command (for example ! in !ping). No "
                            "whitespace, Unicode spaces included (U+00A0, U+3000, ...)."))
    builtins: list[BuiltinCommand] = Field(
        default_factory=lambda: list(ALL_BUILTINS), max_length=len(ALL_BUILTINS),
        description="Which built-in commands are on.",
        json_schema_extra=crd(item="A built-in command.", list_type="set"),
    )
    custom: list[CustomCommand] = Field(
        default_factory=list, max_length=100, description=(
            "Commands answered with a fixed text, image, document or location."),
        json_schema_extra=crd(item={
            "description": "A command that answers with a fixed text, image, document or "
                           "location.",
            "x-kubernetes-validations": [cel(
                "has(self.response) || has(self.image) || has(self.document) || "
                "has(self.location)",
                "a custom command needs a response, image, document or location")]},
            list_type="map", map_keys=("name",)))
    plugins: list[PluginName] = Field(
        default_factory=list, max_length=20, description=(
            "Plugin entry points (group wabot.plugins) loaded into this bot's own command "
            "registry only."),
        json_schema_extra=crd(item="The name of a plugin entry point.", list_type="set"))
