"""Service settings: config/centralino.yaml, overridable by CENTRALINO_* environment variables.

Environment overrides use `__` between levels: CENTRALINO_DATABASE__URL,
CENTRALINO_ASTERISK__PASSWORD.
Relative paths are relative to the settings file's folder.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, model_validator

from centralino.tokens import weakness
from cti.recalls import RecallSettings
from ivr.yamlfile import ConfigError, ConfigProblem, load_yaml

# Public development credentials: production mode refuses them.
DEV_ARI_PASSWORD = "centralino-dev"  # noqa: S105
DEV_ADMIN_TOKEN = "dev-admin-token"  # noqa: S105
DEFAULT_SETTINGS = Path("config/centralino.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AsteriskSettings(_Section):
    ari_url: str = "http://127.0.0.1:8088"
    username: str = "centralino"
    password: str = DEV_ARI_PASSWORD
    app: str = "centralino"


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # How Asterisk reaches this service to fetch prompts (sound:http://...).
    public_url: str = "http://127.0.0.1:8080"
    admin_token: str = DEV_ADMIN_TOKEN
    # HTTPS: both PEM files, or neither (then plain HTTP, for loopback or behind a TLS proxy).
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    # /metrics: set, Prometheus must send `Authorization: Bearer <it>` (or the admin token).
    metrics_token: str = ""
    # Seconds a rendered /metrics page is served again: scrapers cannot make the service
    # recompute the day's figures more often than this, however many there are.
    metrics_max_age: float = Field(5.0, ge=0, le=300)

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSettings:
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("http.tls_certificate and http.tls_key go together")
        return self

    @property
    def loopback_only(self) -> bool:
        """Listening on this machine only (not every address, not a network card)."""
        return is_loopback(self.host)
    # Hostile or unlucky clients (centralino.web.site): a connection without a complete request
    # head this many seconds after it opened or was last answered is closed (idle keep-alive
    # and slowly sent heads alike); each connection's own timeout is 1 to 1.5 times this, so
    # that connections opened together are not all closed together.
    idle_timeout: float = Field(15.0, gt=0, le=3600)
    # Connections beyond these are closed at once. Asterisk's address (asterisk.ari_url's host)
    # and priority_addresses each have their own max_connections_per_address; all the others
    # share max_connections, lowered to what the open files limit allows after
    # descriptor_reserve (kept for ARI, the database, files and logs).
    max_connections_per_address: int = Field(100, ge=1)
    max_connections: int = Field(500, ge=1)
    descriptor_reserve: int = Field(256, ge=64)
    priority_addresses: list[IPvAnyAddress] = []
    # An address whose requests are refused this many times within a minute (malformed, too
    # large or too slow bodies, unknown tokens, too many requests) is barred for a minute: its
    # connections are closed at once. 0: never. Priority addresses are never barred.
    abuse_limit: int = Field(30, ge=0)


class DatabaseSettings(_Section):
    # SQLite needs no set-up; production uses postgresql+asyncpg://user:pass@host/db
    url: str = "sqlite+aiosqlite:///../var/centralino.db"
    # Records still unwritten when the service stops while the database is away: kept here and
    # written at the next start.
    spool: Path = Path("../var/unwritten-records.pickle")


class PromptSettings(_Section):
    manifest: Path = Path("../prompts/manifest.yaml")
    recordings: Path = Path("../prompts/recordings")
    build_dir: Path = Path("../var/prompts")


class TicketSettings(_Section):
    """The written requests' public pages and API (issue #11); what citizens may write about
    is config/tickets.yaml."""

    # Submissions of the web form (valid or not) from one address within an hour; then 429.
    per_address_per_hour: int = Field(20, ge=1, le=10_000)
    # How long a form shown stays good to send (its anti-forgery token), in seconds.
    form_max_age: int = Field(4 * 3600, ge=60, le=7 * 86_400)
    # Where attachments are kept, each once, named by its sha256 (the database has the rows).
    attachments: Path = Path("../var/attachments")


class Settings(_Section):
    mode: Literal["development", "production"] = "development"
    asterisk: AsteriskSettings = AsteriskSettings()
    http: HttpSettings = HttpSettings()
    database: DatabaseSettings = DatabaseSettings()
    prompts: PromptSettings = PromptSettings()
    # Recall requests from the help desk portal (issue #4): clients, numbers, slots, limits.
    recalls: RecallSettings = RecallSettings()
    tickets: TicketSettings = TicketSettings()
    # Development only: start the service clock at this local time (rehearse Christmas Day).
    clock_start: datetime | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # A warning or error already logged within this many seconds is counted, not logged again
    # (centralino.logs): what a flood makes repeat cannot fill the disk.
    log_repeat_interval: float = Field(60.0, ge=0)
    config_dir: Path = Path(".")

    @model_validator(mode="after")
    def _production_has_secrets(self) -> Settings:
        if self.mode != "production":
            if not self.http.loopback_only and (self.http.admin_token == DEV_ADMIN_TOKEN
                                                or self.recalls.dev_keys_in_use()):
                raise ValueError(f"http.host {self.http.host!r} listens beyond this machine "
                                 "with the public development tokens: listen on 127.0.0.1, or "
                                 "set your own http.admin_token and recalls.clients keys")
            return self
        if self.asterisk.password == DEV_ARI_PASSWORD:
            raise ValueError("production mode: set asterisk.password "
                             "(the development one is public)")
        if why := weakness(self.asterisk.password):
            raise ValueError(f"production mode: asterisk.password is too weak ({why}); "
                             "`centralino token` makes a strong one")
        if self.http.admin_token == DEV_ADMIN_TOKEN:
            raise ValueError("production mode: set http.admin_token "
                             "(the development one is public)")
        for name in ("admin_token", "metrics_token"):
            secret = getattr(self.http, name)
            if (secret or name == "admin_token") and (why := weakness(secret)):
                raise ValueError(f"production mode: http.{name} is too weak ({why}); "
                                 "`centralino token` makes a strong one")
        if not self.http.loopback_only and self.http.tls_certificate is None:
            raise ValueError(f"production mode: http.host {self.http.host!r} would serve plain "
                             "HTTP beyond this machine: set http.tls_certificate and "
                             "http.tls_key, or listen on 127.0.0.1 behind a TLS proxy")
        ari = urlsplit(self.asterisk.ari_url)
        if ari.scheme == "http" and not is_loopback(ari.hostname or ""):
            raise ValueError(f"production mode: asterisk.ari_url {self.asterisk.ari_url} would "
                             "send the ARI password in clear to another machine: use https://")
        if self.clock_start is not None:
            raise ValueError("production mode: clock_start is for rehearsals in development only")
        if dev := self.recalls.dev_keys_in_use():
            raise ValueError(f"production mode: recalls.clients: {', '.join(dev)}: the public "
                             "development key (dev-portal); give each portal its own")
        if self.recalls.clients and (missing := self.recalls.not_ready_to_call()):
            raise ValueError(f"production mode: portals may ask for recalls, but {missing[0]}")
        return self

    def resolve(self, base: Path) -> Settings:
        """Make every path absolute against the settings file's folder."""
        db = self.database.url
        if db.startswith("sqlite") and ":///" in db and not db.split(":///", 1)[1].startswith("/"):
            prefix, rel = db.split(":///", 1)
            db = f"{prefix}:///{(base / rel).resolve()}"
        prompts = PromptSettings(
            manifest=(base / self.prompts.manifest).resolve(),
            recordings=(base / self.prompts.recordings).resolve(),
            build_dir=(base / self.prompts.build_dir).resolve(),
        )
        tls = {name: (base / path).resolve() for name in ("tls_certificate", "tls_key")
               if (path := getattr(self.http, name)) is not None}
        return self.model_copy(update={
            "http": self.http.model_copy(update=tls),
            "database": DatabaseSettings(url=db, spool=(base / self.database.spool).resolve()),
            "prompts": prompts,
            "config_dir": (base / self.config_dir).resolve(),
            "tickets": self.tickets.model_copy(update={
                "attachments": (base / self.tickets.attachments).resolve()}),
        })


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name, an empty host (every address): not provably loopback
        return False


def _apply_env(data: dict, environ: dict[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith("CENTRALINO_"):
            continue
        parts = name.removeprefix("CENTRALINO_").lower().split("__")
        if parts[0] not in Settings.model_fields:
            continue
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    path = path or Path(os.environ.get("CENTRALINO_SETTINGS", DEFAULT_SETTINGS))
    if not path.exists():
        raise ConfigError([ConfigProblem(str(path), 1, 1, "", "settings file not found")])
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.problem((), "settings must be a mapping")])
    _apply_env(doc.data, dict(os.environ if environ is None else environ))
    return doc.validate(Settings).resolve(path.parent)
