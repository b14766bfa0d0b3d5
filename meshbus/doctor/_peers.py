"""Which networks this container and its peers are on, from the Docker Engine API's answers.

Pure functions over the JSON of ``GET /containers/json`` and ``/containers/{id}/json``, so the
explanations can be tested on recorded answers; ``_diagnose`` fetches them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshbus.doctor._report import Finding

__all__ = [
    "PEER_LABEL",
    "Container",
    "describe_self",
    "explain_unanswered",
    "explain_unresolved",
    "shared_networks_by_label",
]

PEER_LABEL = "meshbus.peer"
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
SWARM_SERVICE = "com.docker.swarm.service.name"
DEFAULT_BRIDGE = "bridge"
_OPEN = {"host"}  # a container on the host's network reaches (and is reached) by host ports


@dataclass(frozen=True)
class Attachment:
    """One container's endpoint on one network."""

    network: str
    network_id: str
    ip: str
    aliases: tuple[str, ...] = ()
    mac: str = ""


@dataclass(frozen=True)
class Container:
    """What the doctor needs of one container, from a list or an inspect answer."""

    id: str
    name: str
    state: str
    labels: Mapping[str, str] = field(default_factory=dict)
    networks: tuple[Attachment, ...] = ()

    @classmethod
    def from_api(cls, doc: Mapping[str, Any]) -> Container:
        """Parse ``/containers/json`` items and ``/containers/{id}/json`` answers alike."""
        names = doc.get("Names") or [doc.get("Name") or ""]
        state = doc.get("State")
        status = state.get("Status", "") if isinstance(state, dict) else str(state or "")
        config = doc.get("Config") or {}
        labels = doc.get("Labels") or config.get("Labels") or {}
        attached = []
        for name, endpoint in ((doc.get("NetworkSettings") or {}).get("Networks") or {}).items():
            endpoint = endpoint or {}
            attached.append(
                Attachment(
                    network=name,
                    network_id=endpoint.get("NetworkID") or name,
                    ip=endpoint.get("IPAddress") or endpoint.get("GlobalIPv6Address") or "",
                    aliases=tuple(endpoint.get("Aliases") or ()),
                    mac=endpoint.get("MacAddress") or "",
                )
            )
        return cls(
            id=str(doc.get("Id") or ""),
            name=str(names[0]).lstrip("/"),
            state=status,
            labels=dict(labels),
            networks=tuple(attached),
        )

    @property
    def title(self) -> str:
        """``name`` plus what compose calls it, for messages."""
        service = self.labels.get(COMPOSE_SERVICE)
        return f"{self.name} (compose service {service})" if service else self.name

    @property
    def network_names(self) -> list[str]:
        """The names of the networks it is attached to."""
        return [a.network for a in self.networks]

    def shares(self, other: Container) -> list[str]:
        """Networks both are on (``host`` counts as reaching everything)."""
        if _OPEN & {*self.network_names, *other.network_names}:
            return ["host"]
        theirs = {a.network_id for a in other.networks}
        return [a.network for a in self.networks if a.network_id in theirs]

    def answers_to(self, host: str) -> str | None:
        """Why Docker's DNS would give this container for ``host`` (None: it would not)."""
        name = host.lower().removeprefix("tasks.")
        if self.name.lower() == name:
            return "container name"
        if self.labels.get(COMPOSE_SERVICE, "").lower() == name:
            return f"compose service {name} of project {self.labels.get(COMPOSE_PROJECT, '?')}"
        if self.labels.get(SWARM_SERVICE, "").lower() == name:
            return "Swarm service"
        for attachment in self.networks:
            if name in (alias.lower() for alias in attachment.aliases):
                return f"network alias on {attachment.network}"
        if len(name) >= 12 and self.id.startswith(name):
            return "container id"
        return None


def _names(items: Iterable[str]) -> str:
    listed = sorted(set(items))
    return ", ".join(listed) if listed else "no network"


def _connect_fix(me: Container, them: Container) -> str:
    target = next((n for n in them.network_names if n != DEFAULT_BRIDGE), None)
    now = (
        f"docker network connect {target} {me.name}"
        if target
        else f"docker network create NET; docker network connect NET {me.name}; "
        f"docker network connect NET {them.name}"
    )
    return (
        f"put both on one user-defined network: {now}; in compose, list the same network under "
        "`networks:` of both services (a network of another project: declare it in this one "
        f"with `external: true`{f' and `name: {target}`' if target else ''})"
    )


def describe_self(me: Container) -> Finding:
    """What the engine says about this container."""
    return Finding(
        "ok",
        "docker",
        f"this container is {me.title} ({me.id[:12]}), on {_names(me.network_names)}",
    )


def explain_unresolved(
    url: str, host: str, me: Container, others: Sequence[Container]
) -> list[Finding]:
    """Why ``host`` does not resolve here, from the containers the engine knows."""
    matched = [(c, why) for c in others if c.id != me.id and (why := c.answers_to(host))]
    project = me.labels.get(COMPOSE_PROJECT)
    ours = [(c, why) for c, why in matched if project and c.labels.get(COMPOSE_PROJECT) == project]
    matched = ours or matched  # a service of this compose project, if there is one
    if not matched:
        return [
            Finding(
                "fail",
                url,
                f"no container on this Docker engine is named {host!r} or has it as a compose "
                "service, Swarm service or network alias",
                "check the spelling; start the service (docker ps -a --format "
                "'{{.Names}} {{.Status}}' lists every container); in Swarm, this engine sees "
                "only its own node's containers",
            )
        ]
    findings = []
    for them, why in matched:
        what = f"{host!r} is {them.name} ({why})"
        if them.state != "running":
            findings.append(
                Finding(
                    "fail",
                    url,
                    f"{what}, which is {them.state or 'not running'}",
                    f"start it (docker start {them.name}) and read why it stopped "
                    f"(docker logs {them.name})",
                )
            )
            continue
        shared = me.shares(them)
        if not shared:
            findings.append(
                Finding(
                    "fail",
                    url,
                    f"{what}, on {_names(them.network_names)}; this container ({me.name}) is on "
                    f"{_names(me.network_names)}: they share no network, so Docker's DNS does not "
                    "answer the name here and no packet gets through",
                    _connect_fix(me, them),
                )
            )
        elif set(shared) == {DEFAULT_BRIDGE}:
            findings.append(
                Finding(
                    "fail",
                    url,
                    f"{what}; the only network it shares with this container is the default "
                    "bridge, where names do not resolve",
                    _connect_fix(me, them),
                )
            )
        else:
            findings.append(
                Finding(
                    "fail",
                    url,
                    f"{what} and shares {_names(shared)} with this container, but {host!r} is "
                    "not its name or an alias there",
                    f"use its container name ({them.name}) or give it the alias (compose: "
                    f"networks: {{{shared[0]}: {{aliases: [{host}]}}}}; "
                    f"docker network connect --alias {host} {shared[0]} {them.name})",
                )
            )
    return findings


def explain_unanswered(
    url: str, address: str, me: Container, others: Sequence[Container]
) -> Finding | None:
    """Which container owns ``address``, when that explains why its port does not answer."""
    for them in others:
        if them.id == me.id or address not in {a.ip for a in them.networks}:
            continue
        if not me.shares(them):
            return Finding(
                "fail",
                url,
                f"{address} is {them.title}, on {_names(them.network_names)}; this container is "
                f"on {_names(me.network_names)}: they share no network, so packets do not get "
                "through",
                _connect_fix(me, them),
            )
        return Finding(
            "fail",
            url,
            f"{address} is {them.title}, which shares {_names(me.shares(them))} with this "
            "container: the network is fine, so the port is closed (or filtered) there",
            f"check that {them.name} listens on 0.0.0.0 and that port (docker logs {them.name})",
        )
    return None


def shared_networks_by_label(me: Container, others: Sequence[Container]) -> list[Finding]:
    """Peers declared by label, and this compose project's services, that share no network.

    A container labelled ``meshbus.peer=MESH`` expects to reach every running container with the
    same label value (any value, if this container has no such label): each one it shares no
    user-defined network with is a failure. A service of this container's compose project that
    shares no network is only a warning, since compose projects split networks on purpose.
    """
    mesh = me.labels.get(PEER_LABEL)
    project = me.labels.get(COMPOSE_PROJECT)
    running = [c for c in others if c.id != me.id and c.state == "running"]
    peers = [
        c
        for c in running
        if PEER_LABEL in c.labels and (mesh is None or c.labels[PEER_LABEL] == mesh)
    ]
    siblings = [
        c
        for c in running
        if project and c.labels.get(COMPOSE_PROJECT) == project and c not in peers
    ]
    findings = []
    for them, level in [*((p, "fail") for p in peers), *((s, "warn") for s in siblings)]:
        shared = [n for n in me.shares(them) if n != DEFAULT_BRIDGE]
        if shared:
            continue
        why = (
            f"labelled {PEER_LABEL}={them.labels[PEER_LABEL]}"
            if level == "fail"
            else f"in compose project {project}"
        )
        findings.append(
            Finding(
                level,
                "labels",
                f"{them.title}, {why}, is on {_names(them.network_names)}; this container is on "
                f"{_names(me.network_names)}: no user-defined network in common",
                _connect_fix(me, them)
                + ("" if level == "fail" else "; if they are kept apart on purpose, ignore this"),
            )
        )
    if not findings and (peers or siblings):
        scope = " and ".join(
            part
            for part in (
                f"{len(peers)} container(s) labelled {PEER_LABEL}" if peers else "",
                f"{len(siblings)} other container(s) of compose project {project}"
                if siblings
                else "",
            )
            if part
        )
        findings.append(Finding("ok", "labels", f"shares a network with the {scope}"))
    return findings
