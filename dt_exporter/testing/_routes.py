"""Which Dynatrace endpoint a path names (reference sections 1.1, 3, 6, 7, 8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from dt_exporter.testing._auth import EVENTS_SCOPE, LOGS_SCOPE, SECURITY_SCOPE
from dt_exporter.testing._models import EndpointGroup

Endpoint = Literal["logs", "otlp", "events", "security", "oneagent_logs", "oneagent_events"]

_API_PATHS: Final[dict[str, Endpoint]] = {
    "/api/v2/logs/ingest": "logs",
    "/api/v2/otlp/v1/logs": "otlp",
    "/api/v2/events/ingest": "events",
}
#: OneAgent's local API (http://localhost:14499) has no `/api` and no `/e/{env}` prefix.
_ONEAGENT_PATHS: Final[dict[str, Endpoint]] = {
    "/v2/logs/ingest": "oneagent_logs",
    "/v2/events/ingest": "oneagent_events",
}
_SECURITY_PREFIXES: Final = {
    "/platform/ingest/custom/security.events/": False,
    "/platform/ingest/custom/events.security/": True,  # legacy
}
_GROUPS: Final[dict[Endpoint, EndpointGroup]] = {
    "logs": "logs",
    "oneagent_logs": "logs",
    "otlp": "otlp",
    "events": "events",
    "oneagent_events": "events",
    "security": "security",
}
_SCOPES: Final[dict[Endpoint, str]] = {
    "logs": LOGS_SCOPE,
    "otlp": LOGS_SCOPE,
    "events": EVENTS_SCOPE,
    "security": SECURITY_SCOPE,
}


@dataclass(frozen=True, slots=True)
class Route:
    """An endpoint, plus the custom endpoint name for security events."""

    endpoint: Endpoint
    security_endpoint: str | None = None
    legacy: bool = False

    @property
    def group(self) -> EndpointGroup:
        return _GROUPS[self.endpoint]

    @property
    def oneagent(self) -> bool:
        return self.endpoint.startswith("oneagent_")

    @property
    def scope(self) -> str | None:
        """The access-token scope it needs; `None` for OneAgent's unauthenticated paths."""
        return _SCOPES.get(self.endpoint)


def resolve(path: str, env_id: str | None) -> Route | None:
    """The route for a URL path, or `None` (404).

    `/e/{env}` prefixes are accepted for any environment when `env_id` is `None`, else only
    for that one.
    """
    oneagent = _ONEAGENT_PATHS.get(path)
    if oneagent is not None:
        return Route(oneagent)
    if path.startswith("/e/"):
        _, _, env, rest = path.split("/", 3) if path.count("/") >= 3 else ("", "", "", "")
        if not env or (env_id is not None and env != env_id):
            return None
        path = "/" + rest
    endpoint = _API_PATHS.get(path)
    if endpoint is not None:
        return Route(endpoint)
    for prefix, legacy in _SECURITY_PREFIXES.items():
        if path.startswith(prefix):
            name = path[len(prefix) :]
            if name and "/" not in name:
                return Route("security", security_endpoint=name, legacy=legacy)
    return None
