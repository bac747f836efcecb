"""A client of the running service's REST API (``/api/v1``), for the CLI and scripts.

It returns the API's own JSON documents unchanged, so ``--json`` output is the
API's stable shape. Errors, under the package's one root::

    VmshadowError
    ├── ConfigError           (domain) no usable token, or a bad client setting
    ├── ApiError              the service refused: status, field, reason
    └── ServiceUnreachable    nothing answered at the URL (not running, wrong port)

Example::

    with ApiClient(client_config(load_settings())) as api:
        for t in api.list_transitions():
            print(t["id"], t["state"])
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import SSEError, connect_sse

from vmshadow.config import Settings
from vmshadow.domain.errors import ConfigError, VmshadowError

API_PREFIX = "/api/v1"
# The server pings an idle stream every 15 s; a read that waits longer means it is gone.
STREAM_READ_TIMEOUT_S = 60.0


class ApiError(VmshadowError):
    """The service answered with an error document ``{error, field, reason}``."""

    def __init__(self, status: int, doc: dict[str, Any]) -> None:
        self.status = status
        self.doc = doc
        self.field: str | None = doc.get("field")
        message = str(doc.get("error") or f"HTTP {status}")
        reason = str(doc.get("reason") or message)
        # The API repeats the field at the front of some reasons; say it once.
        if self.field and reason.startswith(f"{self.field}: "):
            reason = reason[len(self.field) + 2 :]
        self.reason = reason
        self.warnings: list[str] = list(doc.get("warnings") or [])
        super().__init__(f"{self.field}: {reason}" if self.field else message)


class ServiceUnreachable(VmshadowError):
    """No vmshadow service answered at the configured URL."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(
            f"cannot reach the service at {url} ({why}): is `vmshadow serve` running at {url}? "
            "(set VMSHADOW_URL or client.url in the config file if it runs elsewhere)"
        )
        self.url = url


@dataclass(frozen=True)
class ClientConfig:
    url: str  # the service root, e.g. http://127.0.0.1:8600
    token: str | None  # from VMSHADOW_TOKEN or client.token; else read from token_file
    token_file: Path
    timeout_s: float = 30.0


def client_config(settings: Settings) -> ClientConfig:
    """Where the service is and how to authenticate, from the layered settings.

    URL: ``client.url`` (``VMSHADOW_URL``), else the address ``vmshadow serve``
    binds with the same settings (``api.host``/``api.port``). Token:
    ``client.token`` (``VMSHADOW_TOKEN``), else the file the service wrote
    (``client.token_file``, default ``<data_dir>/api-token``), read only when a
    call needs it, so reading commands work without access to it.
    """
    c = settings.client
    url = c.url or _url_of(settings.api.host, settings.api.port)
    url = url.rstrip("/").removesuffix(API_PREFIX)
    if not url.startswith(("http://", "https://")):
        raise ConfigError("client.url", f"{url!r} is not an http:// or https:// URL")
    return ClientConfig(
        url=url,
        token=c.token.get_secret_value() if c.token else None,
        token_file=c.token_file or settings.token_file,
        timeout_s=c.timeout_s,
    )


def _url_of(host: str, port: int) -> str:
    # A service bound to every address is reached on loopback.
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class ApiClient:
    """One connection pool to the service; close it (or use ``with``)."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._http = httpx.Client(base_url=config.url + API_PREFIX, timeout=config.timeout_s)
        self._token = config.token

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transitions ---------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._dict("POST", "/transitions", json=body, auth=True)

    def list_transitions(self, state: str | None = None, limit: int = 200) -> list[Any]:
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["state"] = state
        return self._list("GET", "/transitions", params=params)

    def get(self, tid: str) -> dict[str, Any]:
        return self._dict("GET", f"/transitions/{_seg(tid)}")

    def cancel(self, tid: str) -> dict[str, Any]:
        return self._dict("POST", f"/transitions/{_seg(tid)}/cancel", auth=True)

    def confirm(self, tid: str) -> dict[str, Any]:
        return self._dict("POST", f"/transitions/{_seg(tid)}/confirm", auth=True)

    def fast_launch(self, tid: str) -> dict[str, Any]:
        return self._dict("POST", f"/transitions/{_seg(tid)}/fast-launch", auth=True)

    def review_override(self, tid: str, size: dict[str, Any]) -> dict[str, Any]:
        """The warnings a size would get; nothing is changed."""
        return self._dict("POST", f"/transitions/{_seg(tid)}/override/review", json=size)

    def override(
        self, tid: str, size: dict[str, Any], *, acknowledge_risk: bool = False
    ) -> dict[str, Any]:
        body = {**size, "acknowledge_risk": acknowledge_risk}
        return self._dict("POST", f"/transitions/{_seg(tid)}/override", json=body, auth=True)

    def stream(self, tid: str) -> Generator[tuple[str, dict[str, Any]], None, None]:
        """The transition's server-sent events as (event, data): ``event`` (a
        timeline entry), ``sample`` (a measurement), ``end`` (it is over)."""
        timeout = httpx.Timeout(self.config.timeout_s, read=STREAM_READ_TIMEOUT_S)
        try:
            with connect_sse(
                self._http,
                "GET",
                f"/transitions/{_seg(tid)}/stream",
                timeout=timeout,
                headers=self._headers(False),
            ) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    raise _api_error(source.response)
                for sse in source.iter_sse():
                    if sse.event in ("event", "sample", "end"):
                        yield sse.event, dict(sse.json())
        except SSEError as exc:
            raise ApiError(502, {"error": f"not an event stream: {exc}"}) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    # -- VMs vmshadow launched -------------------------------------------------------------
    def vms(self) -> dict[str, Any]:
        """``{"items": [...], "errors": [...]}``: every VM, and each host that did not answer."""
        return self._dict("GET", "/vms")

    def vm(self, name: str) -> dict[str, Any]:
        return self._dict("GET", f"/vms/{_seg(name)}")

    def delete_vm(self, name: str) -> None:
        """End the VM's unfinished transitions, destroy it and remove its disks."""
        self._call("DELETE", f"/vms/{_seg(name)}", auth=True)

    # -- catalogue -----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._dict("GET", "/health")

    def profiles(self) -> list[Any]:
        return self._list("GET", "/profiles")

    # -- plumbing ------------------------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            path = self.config.token_file
            try:
                self._token = path.read_text().strip()
            except FileNotFoundError:
                raise ConfigError(
                    "token",
                    f"no token file {path}: start `vmshadow serve` once to make it, "
                    "or set VMSHADOW_TOKEN",
                ) from None
            except PermissionError:
                raise ConfigError(
                    "token",
                    f"cannot read {path} (permission denied): run as the service's user, "
                    "or set VMSHADOW_TOKEN or client.token in your config file",
                ) from None
            if not self._token:
                raise ConfigError("token", f"{path} is empty")
        return self._token

    def _headers(self, auth: bool) -> dict[str, str]:
        """The token on every call that can have it: mutations need it, and so do
        reads of a service bound off loopback. A read without one still goes out,
        since a loopback service answers reads to anyone on the host."""
        try:
            return {"Authorization": f"Bearer {self.token()}"}
        except ConfigError:
            if auth:
                raise
            return {}

    def _dict(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        out = self._call(method, path, **kw)
        if not isinstance(out, dict):
            raise ApiError(502, {"error": f"{path}: expected a JSON object from the service"})
        return out

    def _list(self, method: str, path: str, **kw: Any) -> list[Any]:
        out = self._call(method, path, **kw)
        if not isinstance(out, list):
            raise ApiError(502, {"error": f"{path}: expected a JSON list from the service"})
        return out

    def _call(self, method: str, path: str, *, auth: bool = False, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, headers=self._headers(auth), **kw)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if r.status_code >= 400:
            raise _api_error(r)
        if r.status_code == 204:  # done, nothing to say (DELETE)
            return None
        try:
            return r.json()
        except json.JSONDecodeError as exc:
            raise ApiError(r.status_code, {"error": f"not a JSON answer from {r.url}"}) from exc

    def _unreachable(self, exc: httpx.TransportError) -> ServiceUnreachable:
        if isinstance(exc, httpx.ConnectError):
            why = "connection refused" if "refused" in str(exc).lower() else str(exc)
        elif isinstance(exc, httpx.TimeoutException):
            why = "no answer in time"
        else:
            why = str(exc) or type(exc).__name__
        return ServiceUnreachable(self.config.url, why)


def _seg(tid: str) -> str:
    """One path segment: an ID with a slash must not reach another route."""
    return quote(tid, safe="")


def _api_error(r: httpx.Response) -> ApiError:
    try:
        doc = r.json()
    except json.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        text = r.text.strip().splitlines()[0][:200] if r.text.strip() else r.reason_phrase
        doc = {"error": f"HTTP {r.status_code}: {text}"}
    if r.status_code == 401:
        doc = {
            **doc,
            "field": "token",
            "reason": "the service refused the API token: use the one in its data folder's "
            "api-token file (VMSHADOW_TOKEN, client.token or client.token_file)",
        }
    return ApiError(r.status_code, doc)
