"""HTTP I/O only: one POST, one answer. Keep-alive pool, TLS on, no retries, no redirects."""

from __future__ import annotations

import logging
import ssl
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InsecureRequestWarning,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from dt_exporter._version import __version__
from dt_exporter.errors import TransportError

USER_AGENT: Final = f"dt_exporter/{__version__}"
_URLLIB3_LOGGERS: Final = ("urllib3.connectionpool", "urllib3.connection", "urllib3.response")
SENDER_THREAD_PREFIX: Final = "dt_exporter-sender"
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


class Transport:
    """A keep-alive connection pool for one exporter. Thread-safe (urllib3's pool is)."""

    def __init__(
        self,
        *,
        timeout_s: float,
        ca_bundle: str | None = None,
        verify: bool = True,
    ) -> None:
        self._timeout = urllib3.Timeout(connect=min(timeout_s, 10.0), read=timeout_s)
        if not verify:
            _log.warning(
                "TLS certificate verification is OFF (DT_EXPORTER_INSECURE_SKIP_TLS_VERIFY): "
                "anyone on the path can read the token and the data"
            )
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=1,
            retries=False,
            cert_reqs=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
            ca_certs=ca_bundle,
        )
        self._verify = verify
        _quiet_own_urllib3_logs()

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """Send once. Raises TransportError when no HTTP response came back."""
        try:
            with warnings.catch_warnings():
                if not self._verify:  # warned once, loudly, at construction
                    warnings.simplefilter("ignore", InsecureRequestWarning)
                answer = self._pool.request(
                    "POST",
                    url,
                    body=body,
                    headers={"User-Agent": USER_AGENT, **headers},
                    timeout=self._timeout,
                    retries=False,
                    redirect=False,
                    preload_content=True,
                )
        except SSLError as exc:
            raise TransportError("tls", _reason(exc)) from None
        except (ConnectTimeoutError, NewConnectionError) as exc:
            raise TransportError("connect", _reason(exc)) from None
        except ReadTimeoutError as exc:
            raise TransportError("timeout", _reason(exc)) from None
        except ProtocolError as exc:
            raise TransportError("reset", _reason(exc)) from None
        except HTTPError as exc:
            raise TransportError("protocol", _reason(exc)) from None
        headers_out = {name.lower(): value for name, value in answer.headers.items()}
        return Response(answer.status, headers_out, answer.data or b"")

    def close(self) -> None:
        self._pool.clear()


def _reason(exc: BaseException) -> str:
    """The innermost cause, without the request (headers never appear in urllib3 messages)."""
    inner = exc.__cause__ or exc.__context__ or exc
    return f"{type(inner).__name__}: {inner}"[:300]


class _OwnThreadFilter(logging.Filter):
    """Drops urllib3's debug lines about our own sends, so that with an OTel logging handler on
    the root logger they cannot turn into log records that we would export again."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName or "").startswith(SENDER_THREAD_PREFIX)


_FILTER = _OwnThreadFilter()
_filter_lock = threading.Lock()


def _quiet_own_urllib3_logs() -> None:
    with _filter_lock:
        for name in _URLLIB3_LOGGERS:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
