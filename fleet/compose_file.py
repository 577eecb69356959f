"""The shape of the docker-compose.yml that `python -m fleet compose` writes, Compose's units
for a Kubernetes quantity, and the cross-reference check the generator runs on its own output
before writing it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

USER = "10001:10001"


class QuantityError(ValueError):
    pass


def cpus(quantity: str) -> str:
    """A Kubernetes CPU quantity ("500m", "2") as Compose's decimal CPUs ("0.5", "2")."""
    try:
        value = (Decimal(quantity[:-1]) / 1000 if quantity.endswith("m")
                 else Decimal(quantity))
    except InvalidOperation:
        raise QuantityError(f"not a CPU quantity: {quantity!r}") from None
    return format(value.normalize(), "f")


_FACTORS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
            "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, None: 1}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")


def memory(quantity: str) -> str:
    """A Kubernetes memory quantity as a Compose byte value, exactly: Docker's units are
    binary (1m = 1 MiB), so 256Mi becomes 256m and 1G (decimal) 1000000000b."""
    m = _QUANTITY.match(quantity)
    if not m:
        raise QuantityError(f"not a memory quantity: {quantity!r}")
    exact = Decimal(m.group(1)) * _FACTORS[m.group(2)]
    if exact != exact.to_integral_value():
        raise QuantityError(f"memory quantity {quantity!r} is not a whole number of bytes")
    size = int(exact)
    for unit, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}b"


# --- the output's shape ---------------------------------------------------------------------


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_M):
    cpus: str | None = None
    memory: str | None = None


class DeployResources(_M):
    limits: Resources | None = None
    reservations: Resources | None = None


class Deploy(_M):
    resources: DeployResources


class Healthcheck(_M):
    test: list[str]
    interval: str = "10s"
    timeout: str = "5s"
    retries: int = 6
    start_period: str = "30s"


class Mount(_M):
    type: Literal["volume"] = "volume"
    source: str
    target: str


class ConfigRef(_M):
    source: str
    target: str


class Dependency(_M):
    condition: Literal["service_started", "service_healthy", "service_completed_successfully"]


class Service(_M):
    image: str
    command: list[str] | None = None
    environment: dict[str, str]
    ports: list[str] | None = None
    volumes: list[Mount] | None = None
    configs: list[ConfigRef] | None = None
    user: str | None = USER
    read_only: bool | None = True
    tmpfs: list[str] | None = None
    cap_drop: list[str] | None = Field(default_factory=lambda: ["ALL"])
    security_opt: list[str] | None = Field(default_factory=lambda: ["no-new-privileges:true"])
    mem_limit: str | None = None
    mem_reservation: str | None = None
    cpus: str | None = None
    deploy: Deploy | None = None
    healthcheck: Healthcheck | None = None
    depends_on: dict[str, Dependency] | None = None
    restart: str = "unless-stopped"
    stop_grace_period: str | None = None
    profiles: list[str] | None = None
    labels: dict[str, str] | None = None


class ConfigFile(_M):
    file: str


class ComposeFile(_M):
    services: dict[str, Service]
    volumes: dict[str, dict[str, Any]]
    configs: dict[str, ConfigFile]

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)


_SERVICE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def check_compose(doc: Mapping[str, Any], base_dir: Path | None = None) -> list[str]:
    """The cross-references a schema cannot check: every dependency, volume and config a
    service names exists, config files exist, and no two bots share an auth volume."""
    problems: list[str] = []
    services = doc.get("services") or {}
    volumes = doc.get("volumes") or {}
    configs = doc.get("configs") or {}
    owners: dict[str, str] = {}
    for name, svc in services.items():
        if not _SERVICE_NAME.match(name):
            problems.append(f"service name {name!r} is not valid")
        if "image" not in svc and "build" not in svc:
            problems.append(f"{name}: neither image nor build")
        for dep in svc.get("depends_on") or {}:
            if dep not in services:
                problems.append(f"{name}: depends_on unknown service {dep!r}")
        for mount in svc.get("volumes") or []:
            if mount.get("type") == "volume":
                src = mount.get("source")
                if src not in volumes:
                    problems.append(f"{name}: volume {src!r} is not declared")
                elif src in owners and src != "postgres-data":
                    problems.append(f"{name}: volume {src!r} is also mounted by {owners[src]}")
                owners.setdefault(src, name)
        for ref in svc.get("configs") or []:
            if ref.get("source") not in configs:
                problems.append(f"{name}: config {ref.get('source')!r} is not declared")
        for key, value in (svc.get("environment") or {}).items():
            if not isinstance(value, str):
                problems.append(f"{name}: environment {key} is not a string")
    if base_dir is not None:
        for cname, cfg in configs.items():
            if not (base_dir / cfg["file"]).is_file():
                problems.append(f"config {cname}: file {cfg['file']} does not exist")
    return problems


