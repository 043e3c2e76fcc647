"""Security by default (issue #9, finding 11): production refuses weak and development secrets,
plain HTTP beyond this machine and clear-text ARI to another host; development does not
listen beyond this machine with the public tokens; /metrics pages are shared by scrapers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from centralino.settings import Settings
from centralino.tokens import generate, weakness
from centralino.web.app import MetricsPage
from centralino.web.common import RUNNING, SETTINGS, identify, well_formed
from cti.config import AgentEntry, AgentsConfig, token_hash
from cti.recalls import PortalClient, RecallSettings, key_hash

REPO = Path(__file__).resolve().parents[2]
ARI = "ari-Zk3pP9qLm2xVt7wRb4n"
ADMIN = "adm-Q8vN2kT6yH4mW9cX3rJ7"
PRODUCTION = {"mode": "production", "asterisk": {"password": ARI}, "http": {"admin_token": ADMIN}}


def production(**changes: dict[str, object]) -> Settings:
    data: dict[str, dict[str, object] | str] = {k: dict(v) if isinstance(v, dict) else v
                                                for k, v in PRODUCTION.items()}
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values}  # type: ignore[dict-item]
    return Settings.model_validate(data)


def test_strong_secrets_pass():
    assert production().http.admin_token == ADMIN
    assert weakness(generate()) is None


@pytest.mark.parametrize("secret, why", [
    (" " * 16, "shorter than 20"),
    (" " * 40, "spaces"),
    ("a" * 40, "too predictable"),
    ("abcabcabcabcabcabcabcabcabcabc", "too predictable"),
    ("x", "shorter than 20"),
    ("passwordpassword", "shorter than 20"),
])
def test_weak_secrets_are_refused_in_production(secret, why):
    for section, field in (("http", "admin_token"), ("asterisk", "password"),
                           ("http", "metrics_token")):
        with pytest.raises(ValidationError, match=f"{section}.{field} is too weak.*{why}"):
            production(**{section: {field: secret}})


def test_plain_http_beyond_this_machine_needs_tls_in_production(tmp_path):
    for host in ("0.0.0.0", "::", "192.0.2.10", "centralino.example.org", ""):
        with pytest.raises(ValidationError, match="would serve plain HTTP beyond this machine"):
            production(http={"host": host})
    for host in ("127.0.0.1", "::1", "localhost"):
        assert production(http={"host": host}).http.loopback_only
    tls = {"host": "0.0.0.0", "tls_certificate": "cert.pem", "tls_key": "key.pem"}
    assert production(http=tls).http.tls_key == Path("key.pem")
    with pytest.raises(ValidationError, match="go together"):
        production(http={"tls_certificate": "cert.pem"})


def test_clear_text_ari_to_another_host_is_refused_in_production():
    with pytest.raises(ValidationError, match="ARI password in clear to another machine"):
        production(asterisk={"ari_url": "http://192.0.2.5:8088"})
    assert production(asterisk={"ari_url": "https://pbx.example.org:8089"})
    assert production(asterisk={"ari_url": "http://127.0.0.1:8088"})  # this machine


def test_development_does_not_listen_beyond_this_machine_with_public_tokens():
    with pytest.raises(ValidationError, match="public development tokens"):
        Settings.model_validate({"http": {"host": "0.0.0.0"}})
    dev_portal = RecallSettings(clients={"p": PortalClient(key_sha256=key_hash("dev-portal"))})
    with pytest.raises(ValidationError, match="public development tokens"):
        Settings.model_validate({"http": {"host": "0.0.0.0", "admin_token": ADMIN},
                                 "recalls": dev_portal.model_dump()})
    assert Settings.model_validate({"http": {"host": "0.0.0.0", "admin_token": ADMIN}})
    assert Settings.model_validate({"http": {"host": "127.0.0.1"}})  # the default: fine


def service(mode: str, **tokens: str) -> dict[Any, Any]:
    """What `identify` reads of the app: the settings and the agents' token hashes."""
    agents = AgentsConfig(3, {aid: AgentEntry(name=aid, device=f"PJSIP/{aid}", topics={"a": 0},
                                              token_sha256=token_hash(t))
                              for aid, t in tokens.items()}, {}, "")
    settings = Settings.model_validate({**PRODUCTION, "mode": mode})
    return {SETTINGS: settings, RUNNING: SimpleNamespace(config=SimpleNamespace(agents=agents))}


def test_a_weak_token_is_refused_when_presented_in_production(caplog):
    strong = generate()
    prod = service("production", weak="1001", strong=strong)
    assert identify(prod, strong) == ("agent", "strong")  # type: ignore[arg-type]
    assert identify(prod, "1001") is None  # type: ignore[arg-type]
    assert "refused the token of agent weak: too weak for production" in caplog.text
    assert identify(prod, ADMIN) == ("admin", "admin")  # type: ignore[arg-type]
    dev = service("development", weak="1001")
    assert identify(dev, "1001") == ("agent", "weak")  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["", "a b", "x" * 257, "caf\u00e9", "\udcff\udcfe", "tab\t"])
def test_tokens_that_cannot_be_ours_are_not_even_looked_up(token):
    assert not well_formed(token)
    assert identify(service("development", a="dev-a"), token) is None  # type: ignore[arg-type]


def test_centralino_token_prints_a_strong_token_and_its_hash():
    out = subprocess.run([sys.executable, "-m", "centralino", "token"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    lines = dict(line.split(":", 1) for line in out.splitlines())
    secret, digest = lines["token"].strip(), lines["sha256"].strip()
    assert weakness(secret) is None and token_hash(secret) == digest


async def test_concurrent_scrapes_share_one_rendering_within_max_age():
    made = 0

    async def render() -> bytes:
        nonlocal made
        made += 1
        await asyncio.sleep(0.05)
        return f"page {made}".encode()

    page = MetricsPage(max_age=60)
    assert set(await asyncio.gather(*(page.get(render) for _ in range(20)))) == {b"page 1"}
    assert await page.get(render) == b"page 1" and made == 1
    fresh = MetricsPage(max_age=0)  # tests: every scrape renders, concurrent ones still share
    assert set(await asyncio.gather(*(fresh.get(render) for _ in range(5)))) == {b"page 2"}
    assert await fresh.get(render) == b"page 3"


async def test_a_failed_rendering_is_not_served_again():
    calls = 0

    async def render() -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database away")
        return b"ok"

    page = MetricsPage(max_age=60)
    with pytest.raises(RuntimeError):
        await page.get(render)
    assert await page.get(render) == b"ok"
