"""The `centralino` command."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
import urllib.parse
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from centralino import logs
from centralino.settings import Settings, load_settings
from ivr.clock import aware
from ivr.yamlfile import ConfigError

if TYPE_CHECKING:
    from centralino.config import Config

log = logging.getLogger("centralino")


def _settings(ctx: click.Context) -> Settings:
    try:
        return load_settings(ctx.obj["settings_path"])
    except ConfigError as exc:
        raise click.ClickException(f"bad settings:\n{exc}") from None


def _config(settings: Settings) -> Config:
    from centralino.config import load_config

    return load_config(settings)


@click.group()
@click.option("--settings", "settings_path", type=click.Path(path_type=Path),
              envvar="CENTRALINO_SETTINGS", default="config/centralino.yaml", show_default=True,
              help="The service settings file.")
@click.pass_context
def main(ctx: click.Context, settings_path: Path) -> None:
    """centralino: the telephone side of a public-administration help desk, on Asterisk."""
    ctx.obj = {"settings_path": settings_path}


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the service (SIGHUP reloads the configuration)."""
    from centralino.web.site import raise_descriptor_limit

    settings = _settings(ctx)
    handler = logs.configure(settings.log_level, settings.log_repeat_interval)
    raise_descriptor_limit()
    try:
        asyncio.run(_serve(settings))
    except ConfigError as exc:
        raise click.ClickException(f"configuration refused:\n{exc}") from None
    except KeyboardInterrupt:
        pass
    finally:
        logging.getLogger().removeHandler(handler)


async def _serve(settings: Settings) -> None:
    from centralino.ari.client import AriAuthError, AriUnavailable
    from centralino.service import Service
    from centralino.storage.store import DatabaseError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        async with Service(settings) as service:
            # Everything loaded so far lives as long as the process: keep it out of the garbage
            # collector's full passes, which otherwise stall every call for tens of ms.
            gc.collect()
            gc.freeze()

            async def reload() -> None:
                try:
                    await service.running.reload()
                except ConfigError as exc:  # a line each, complete, for whoever greps the log
                    for problem in exc.problems:
                        log.error("reload refused: %s", problem, extra=logs.NEVER_FOLDED)
                    log.error("reload refused (%d problem(s)): the running configuration stays",
                              len(exc.problems), extra=logs.NEVER_FOLDED)
                except Exception:  # a bug, not a bad file: keep serving, say where it is
                    log.exception("reload failed (a bug: please report this traceback)")

            loop.add_signal_handler(signal.SIGHUP, lambda: service.spawn(reload()))
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            await stop.wait()
            log.info("stopping; calls in progress stay up in Asterisk and are adopted on restart")
    except (AriAuthError, DatabaseError) as exc:
        raise click.ClickException(str(exc)) from None
    except AriUnavailable as exc:
        raise click.ClickException(
            f"{exc}\nIs Asterisk running? (asterisk-dev/chroot.sh start)") from None


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the settings and the whole configuration; exit 1 on any problem."""
    settings = _settings(ctx)
    try:
        config = _config(settings)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        click.echo(f"{len(exc.problems)} problem(s): configuration refused", err=True)
        sys.exit(1)
    for warning in config.call.warnings:
        click.echo(f"warning: {warning}", err=True)
    call, tickets = config.call, config.tickets
    written = (f", tickets on {len(tickets.topics)} topics and {len(tickets.groups)} "
               f"second-level group(s)" if tickets else "")
    click.echo(f"ok: {len(call.flows)} numbers, {len(call.queues)} queues, "
               f"{len(call.prompts)} prompts, {len(config.agents.agents)} agents{written} "
               f"(version {config.version})")


@main.command()
@click.option("--number", required=True, help="The number dialled.")
@click.option("--keys", default="", help="Keys pressed in order, e.g. 1,2 ('-' = no key).")
@click.option("--at", "at", type=click.DateTime(["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M",
                                                   "%Y-%m-%dT%H:%M:%S"]),
              help="When the call happens (local time); default now.")
@click.pass_context
def simulate(ctx: click.Context, number: str, keys: str, at: datetime | None) -> None:
    """Print what a caller would hear, with the same engine real calls use."""
    from ivr.clock import SystemClock
    from ivr.simulate import parse_keys
    from ivr.simulate import simulate as run_simulation

    settings = _settings(ctx)
    try:
        config = _config(settings).call
        pressed = parse_keys(keys)
    except ConfigError as exc:
        raise click.ClickException(f"configuration refused:\n{exc}") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--keys") from None
    if number not in config.flows:
        raise click.BadParameter(f"no flow for {number}; known: {', '.join(config.flows)}",
                                 param_hint="--number")
    when = aware(at) if at else SystemClock().now()
    asyncio.run(run_simulation(config, number, pressed, when, click.echo))


@main.command()
@click.option("--output", type=click.Path(path_type=Path), help="Write here instead of stdout.")
@click.option("--check", "check_file", type=click.Path(path_type=Path),
              help="Exit 1 if this file differs from what the config renders.")
@click.pass_context
def dialplan(ctx: click.Context, output: Path | None, check_file: Path | None) -> None:
    """Render the Asterisk dialplan for the configured numbers."""
    from centralino.dialplan import render_dialplan

    settings = _settings(ctx)
    try:
        text = render_dialplan(_config(settings).call, settings.asterisk.app)
    except ConfigError as exc:
        raise click.ClickException(f"configuration refused:\n{exc}") from None
    if check_file:
        if not check_file.exists() or check_file.read_text() != text:
            raise click.ClickException(f"{check_file} is out of date: run "
                                       f"`centralino dialplan --output {check_file}`")
        click.echo(f"{check_file} matches the configuration")
    elif output:
        output.write_text(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@main.group()
def prompts() -> None:
    """Prompt audio."""


@prompts.command("build")
@click.pass_context
def prompts_build(ctx: click.Context) -> None:
    """Convert recordings (wav/flac/ogg/mp3) to 8 kHz and speak placeholders for the rest."""
    from centralino.promptbuild import build_prompts

    settings = _settings(ctx)
    try:
        config = _config(settings).call
    except ConfigError as exc:
        raise click.ClickException(f"configuration refused:\n{exc}") from None
    report = build_prompts(config.prompts, settings.prompts.recordings, settings.prompts.build_dir)
    by_source = {"recording": 0, "tts": 0}
    for built in report.built:
        by_source[built.source] += 1
    click.echo(f"{len(report.built)} prompts in {settings.prompts.build_dir}: "
               f"{by_source['recording']} recorded, {by_source['tts']} placeholder speech; "
               f"{len(report.rebuilt)} rebuilt, {len(report.removed)} removed")
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    if report.errors:
        sys.exit(1)


def _api(settings: Settings, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Call the running service's admin API."""
    import urllib.error
    import urllib.request

    url = f"http://{settings.http.host}:{settings.http.port}{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {settings.http.admin_token}",
        "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - always http://
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:  # not our JSON error: a crash (500) or whatever sits in front
            raise click.ClickException(f"the service answered {exc.code} {exc.reason} to "
                                       f"{method} {path}: see its log") from None
    except urllib.error.URLError as exc:
        raise click.ClickException(f"the service is not answering at {url}: {exc.reason}. "
                                   "Is `centralino run` running?") from None


@main.command()
@click.pass_context
def reload(ctx: click.Context) -> None:
    """Ask the running service to load the configuration again (refused if invalid)."""
    status, body = _api(_settings(ctx), "POST", "/api/admin/reload")
    if status != 200:
        click.echo(body.get("error", body), err=True)
        for problem in body.get("problems", []):
            click.echo(problem, err=True)
        sys.exit(1)
    for warning in body.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"reloaded: configuration {body['version']}")


@main.group()
def line() -> None:
    """See lines, or force one closed/open (an emergency) until a given time."""


@line.command("status")
@click.pass_context
def line_status_cmd(ctx: click.Context) -> None:
    status, body = _api(_settings(ctx), "GET", "/api/lines")
    if status != 200:
        raise click.ClickException(_why(body))
    for ln in body:
        state = "OPEN  " if ln["open"] else "CLOSED"
        extra = f" forced until {ln['override']['until']}: {ln['override']['reason']}" \
            if ln["override"] else ""
        click.echo(f"{ln['number']:>14}  {state} ({ln['why']}) {ln['name']}{extra}")


def _who() -> str:
    """Who forced a line, for the override's log: the operator's login name."""
    return f"cli:{os.environ.get('USER') or 'unknown'}"


def _why(answer: Any) -> str:
    """The service's reason for refusing (its JSON error), as one line."""
    return answer.get("error", str(answer)) if isinstance(answer, dict) else str(answer)


def _line_path(number: str) -> str:
    # Whatever was typed stays one path segment: "06/123" or "0612#" cannot reach another route.
    return f"/api/lines/{urllib.parse.quote(number, safe='')}/override"


def _force(ctx: click.Context, state: str, number: str, until: datetime, reason: str) -> None:
    body = {"state": state, "until": aware(until).isoformat(), "reason": reason, "by": _who()}
    status, answer = _api(_settings(ctx), "PUT", _line_path(number), body)
    if status != 200:
        raise click.ClickException(_why(answer))
    click.echo(f"{number} forced {state} until {answer['until']}")


_until = click.option("--until", required=True, type=click.DateTime(
    ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"]), help="Local time the override expires.")
_reason = click.option("--reason", required=True, help="Why (kept in the log).")


@line.command("close")
@click.argument("number")
@_until
@_reason
@click.pass_context
def line_close(ctx: click.Context, number: str, until: datetime, reason: str) -> None:
    """Force NUMBER closed (callers hear the emergency message) until --until."""
    _force(ctx, "closed", number, until, reason)


@line.command("open")
@click.argument("number")
@_until
@_reason
@click.pass_context
def line_open(ctx: click.Context, number: str, until: datetime, reason: str) -> None:
    """Force NUMBER open (ignoring hours and holidays) until --until."""
    _force(ctx, "open", number, until, reason)


@line.command("auto")
@click.argument("number")
@click.pass_context
def line_auto(ctx: click.Context, number: str) -> None:
    """Clear an override: NUMBER follows its opening hours again."""
    query = urllib.parse.urlencode({"by": _who()})
    status, answer = _api(_settings(ctx), "DELETE", f"{_line_path(number)}?{query}")
    if status != 200:
        raise click.ClickException(_why(answer))
    click.echo(f"{number} follows its opening hours")


@main.command()
@click.option("--number", required=True, help="The number to dial.")
@click.option("--keys", default="", help="Keys to press when the service waits, e.g. 1,2.")
@click.option("--caller", default="3331234567", show_default=True, help="Caller id number.")
@click.option("--hold", default=3.0, show_default=True,
              help="Seconds to stay on hold once queued before hanging up.")
@click.pass_context
def call(ctx: click.Context, number: str, keys: str, caller: str, hold: float) -> None:
    """Place a real test call through the running Asterisk and print what was played."""
    from ivr.simulate import parse_keys

    settings = _settings(ctx)
    try:
        pressed = parse_keys(keys)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--keys") from None
    asyncio.run(_test_call(settings, number, pressed, caller, hold))


async def _test_call(settings: Settings, number: str, keys: list[str], caller: str,
                     hold: float) -> None:
    from centralino.ari.client import AriError
    from centralino.simcaller import SimCaller, media_name

    a = settings.asterisk
    try:
        async with SimCaller(a.ari_url, a.username, a.password) as sim:
            call = await sim.dial(number, caller_number=caller)
            printed = 0

            def show_new() -> None:
                nonlocal printed
                for uri in call.started[printed:]:
                    click.echo(f"  played {media_name(uri)}")
                printed = len(call.started)

            click.echo(f"calling {number} as {caller}")
            for key in keys:
                await call.wait_idle()
                show_new()
                if call.ended.is_set():
                    break
                if key == "-":
                    click.echo("  (no key)")
                    await asyncio.sleep(0.1)
                    continue
                click.echo(f"  pressed {key}")
                await call.press(key)
            if not call.ended.is_set():
                await call.wait_idle(quiet=1.0)
            show_new()
            if not call.ended.is_set():
                click.echo(f"  (nothing more plays: on hold or waiting for a key; hanging up "
                           f"in {hold:g} s)")
                await asyncio.sleep(hold)
                await call.hangup()
            else:
                click.echo("  the service hung up")
    except AriError as exc:
        raise click.ClickException(str(exc)) from None
    await asyncio.sleep(0.5)  # let the service store its record
    status, records = _api(settings, "GET", f"/api/calls?channel_id={call.service_half}")
    if status == 200 and records:
        rec = records[0]
        path = " ".join(f"{s['key']}:{s['detail']}" for s in rec["steps"] if s["kind"] == "key")
        click.echo(f"record: outcome {rec['outcome']}"
                   f"{' (' + rec['topic'] + ')' if rec['topic'] else ''}; keys {path or '-'}; "
                   f"{rec['detail']}")


@main.command()
def token() -> None:
    """Make a new secret (an agent's or supervisor's token, a portal key, the admin token or
    the ARI password) and print it with the sha256 that agents.yaml and recalls.clients
    keep instead of it."""
    from centralino.tokens import generate
    from cti.config import token_hash

    secret = generate()
    click.echo(f"token:  {secret}")
    click.echo(f"sha256: {token_hash(secret)}")
    click.echo("Give the token to its holder (and only to them); put the sha256 in agents.yaml "
               "(token_sha256) or centralino.yaml (recalls.clients.<id>.key_sha256).", err=True)


@main.group()
def db() -> None:
    """Database."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply the schema migrations (the service also does this when it starts)."""
    from centralino.storage.store import DatabaseError, Store

    settings = _settings(ctx)

    async def upgrade() -> None:
        async with Store(settings.database.url):
            pass

    try:
        asyncio.run(upgrade())
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("database schema is up to date")
