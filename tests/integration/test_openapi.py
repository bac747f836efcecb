"""The OpenAPI document is one clients can be generated from: a bearer security
scheme on the calls that need the token, stable operation ids, the error shape
for every status, the stream as text/event-stream; and /docs is served from
the host itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_api import API, auth, launch_body
from test_api import settings as settings

from vmshadow.server import Service

pytestmark = pytest.mark.libvirt
GOLDEN = Path(__file__).parent / "golden" / "operation-ids.txt"
MUTATING = {"post", "put", "delete", "patch"}


@pytest.fixture
def doc(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, m, op) for path, ops in doc["paths"].items() for m, op in ops.items()]


def test_mutations_declare_the_bearer_scheme(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["token"]["description"],
    }
    for path, method, op in operations(doc):
        # A review changes nothing: it answers what an override would be told.
        if method in MUTATING and not op["operationId"].endswith("-review"):
            assert op.get("security") == [{"token": []}], f"{method} {path}"


def test_operation_ids_are_unique_and_stable(doc: dict[str, Any]) -> None:
    """Generated clients name their methods after these: a change is a break."""
    ids = sorted(op["operationId"] for _p, _m, op in operations(doc))
    assert len(ids) == len(set(ids))
    assert ids == GOLDEN.read_text().split(), "operation ids changed: update the golden file"


def test_every_operation_documents_the_error_shape(doc: dict[str, Any]) -> None:
    body = doc["components"]["schemas"]["ErrorBody"]
    assert set(body["required"]) == {"error", "field", "reason"}
    for path, method, op in operations(doc):
        for status in ("401", "404", "422", "503"):
            content = op["responses"][status]["content"]["application/json"]
            assert content["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"
            }, f"{method} {path} {status}"


def test_the_stream_is_text_event_stream(doc: dict[str, Any]) -> None:
    ok = doc["paths"]["/api/v1/transitions/{tid}/stream"]["get"]["responses"]["200"]
    assert list(ok["content"]) == ["text/event-stream"]


def test_the_token_works_as_generated_clients_send_it(client: TestClient, svc: Service) -> None:
    ok = client.post(f"{API}/transitions", json=launch_body(), headers=auth(svc))
    assert ok.status_code == 201
    lower = {"Authorization": f"bearer {svc.token}"}
    assert (
        client.post(
            f"{API}/transitions", json=launch_body(vm_name="web2"), headers=lower
        ).status_code
        == 201
    )
    for headers in ({}, {"Authorization": f"Basic {svc.token}"}, {"Authorization": "Bearer nope"}):
        r = client.post(f"{API}/transitions", json=launch_body(vm_name="web3"), headers=headers)
        assert r.status_code == 401 and set(r.json()) >= {"error", "field", "reason"}, headers


def test_docs_page_loads_only_from_the_host(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and "swagger-ui-bundle.js" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    assert "http" not in r.text.replace("http-equiv", "")  # no absolute URL: no CDN
    for asset in ("/static/vendor/swagger-ui-bundle.js", "/static/vendor/swagger-ui.css",
                  "/static/apidocs.js"):  # fmt: skip
        assert client.get(asset).status_code == 200, asset
