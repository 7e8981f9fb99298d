"""The console's files as the gateway serves them: the page and its modules, validators, a strict CSP, nothing else
under /ui; and the admin-key role that lets the console in."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gw import MASTER_KEY, RunningGateway  # (tests/server, put on the path by conftest)

from modelway.auth.keys import new_key
from modelway.server.console import _FILES

STATIC = Path(__file__).parents[2] / "src" / "modelway" / "server" / "console" / "static"


def test_every_file_the_page_loads_is_served_and_every_served_file_exists() -> None:
    assert {p.name for p in STATIC.iterdir()} == set(_FILES)
    html = (STATIC / "index.html").read_text()
    loaded = set(re.findall(r'(?:href|src)="/ui/([^"]+)"', html))
    imported = {m for p in STATIC.glob("*.js") for m in re.findall(r'from "\./([^"]+)"', p.read_text())}
    assert loaded | imported <= set(_FILES) and "console.js" in loaded
    for f in STATIC.iterdir():  # nothing from the internet: the console works offline (XML namespaces are names)
        assert not re.search(r"https?://(?!www\.w3\.org/)", f.read_text()), f.name
    assert "innerHTML" not in "".join(p.read_text() for p in STATIC.glob("*.js"))  # the DOM, never HTML strings


def test_translations_cover_every_text_the_pages_show() -> None:
    i18n = (STATIC / "i18n.js").read_text()
    known = set(re.findall(r'"([^"]+)": "', i18n))
    shown: set[str] = set()
    for p in STATIC.glob("*.js"):
        text = p.read_text()
        shown |= set(re.findall(r'\bt\("([^"]+)"\)', text)) | set(re.findall(r'label: "([^"]+)"', text))
    shown.discard("")
    assert shown and not sorted(shown - known), f"no Chinese for: {sorted(shown - known)}"


@pytest.fixture
def client(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url) as c:
        yield c


def test_the_page_its_validators_and_its_headers(client: httpx.Client) -> None:
    for path in ("/ui", "/ui/", "/ui/index.html"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    r = client.get("/ui/console.js")
    assert r.headers["content-type"].startswith("text/javascript") and r.headers["cache-control"] == "no-cache"
    again = client.get("/ui/console.js", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    head = client.head("/ui/console.css")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 1000


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/../pyproject.toml", "/ui/static/index.html", "/uix"])
def test_nothing_else_is_served(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_only_get_and_head(client: httpx.Client) -> None:
    r = client.post("/ui", content=b"x")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def test_a_key_with_the_admin_role_is_an_admin_and_others_are_not() -> None:
    from modelway.auth.authenticator import _caller

    _, plain = new_key("plain")
    _, admin = new_key("ops", metadata={"role": "admin"})
    _, other = new_key("x", metadata={"role": "viewer"})
    assert _caller(admin).admin and admin.admin
    assert not _caller(plain).admin and not _caller(other).admin


def test_an_admin_key_cannot_outlive_its_revocation_nor_reach_the_gateways_secrets(client: httpx.Client) -> None:
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    made = client.post("/admin/keys", headers=master, json={"name": "ops", "metadata": {"role": "admin"}}).json()
    admin = {"Authorization": f"Bearer {made['key']}"}
    assert client.get("/admin/keys", headers=admin).status_code == 200  # the console's admin API
    plain = client.post("/admin/keys", headers=admin, json={"name": "team"})
    assert plain.status_code == 201  # it manages ordinary keys
    assert client.patch(f"/admin/keys/{plain.json()['id']}", headers=admin, json={"rpm": 5}).status_code == 200
    refused = [
        client.post("/admin/keys", headers=admin, json={"name": "heir", "metadata": {"role": "admin"}}),
        client.patch(f"/admin/keys/{made['id']}", headers=admin, json={"expires_at": None}),
        client.patch(f"/admin/keys/{plain.json()['id']}", headers=admin, json={"metadata": {"role": "admin"}}),
        client.post(
            "/admin/deployments",
            headers=admin,
            json={
                "model_name": "gpt",
                "model": "openai/x",
                "api_key_env": "MODELWAY_MASTER_KEY",
                "api_base": "http://e",
            },
        ),
    ]
    for r in refused:
        assert r.status_code == 403 and r.json()["error"]["code"] == "master_only", r.text
    dep = next(d for d in client.get("/admin/deployments", headers=admin).json()["data"] if d.get("id"))
    assert client.post(f"/admin/deployments/{dep['id']}/disable", headers=admin).status_code == 200  # the console's
    assert client.post(f"/admin/deployments/{dep['id']}/enable", headers=admin).status_code == 200
    assert client.delete(f"/admin/keys/{made['id']}", headers=master).status_code == 200
    deadline = time.monotonic() + 5
    while client.get("/admin/keys", headers=admin).status_code != 401:  # revoked: locked out
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted() -> None:
    from modelway.server.admin_usage import _cell

    assert [_cell(v) for v in ("=HYPERLINK(1)", "+1", "-x", "@a", "\tx", "gpt", 3)] == [
        "'=HYPERLINK(1)", "'+1", "'-x", "'@a", "'\tx", "gpt", 3,
    ]  # fmt: skip
