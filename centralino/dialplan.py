"""Render the Asterisk dialplan that hands each configured number to our Stasis application."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from centralino.settings import load_settings
from ivr.config import CallConfig, load_call_config

INBOUND_CONTEXT = "centralino-inbound"


def render_dialplan(config: CallConfig, app: str) -> str:
    lines = [
        "; Rendered by `centralino dialplan` from config/flows/*.yaml. Do not edit: change the",
        "; flows and render again (CI checks that this file matches the example config).",
        "",
        f"[{INBOUND_CONTEXT}]",
    ]
    for number in sorted(config.flows):
        flow = config.flows[number]
        lines += [
            f"; {flow.name} ({config.flow_files[number]})",
            f"exten => {number},1,Set(CHANNEL(language)={flow.language})",
            f" same => n,Stasis({app},${{EXTEN}})",
            " same => n,GotoIf($[\"${STASISSTATUS}\" != \"SUCCESS\"]?centralino-unavailable,s,1)",
            " same => n,Hangup()",
            "",
        ]
    lines += [
        "; centralino is not connected (stopped or restarting): say so instead of dead air.",
        "[centralino-unavailable]",
        "exten => s,1,Answer()",
        " same => n,Playback(ss-noservice)",
        " same => n,Hangup()",
        "",
    ]
    return "\n".join(lines)


def render_merged(settings_files: Iterable[Path], app: str) -> str:
    """One dialplan for the numbers of several configurations: the development Asterisk
    serves the example's numbers (`./dev run`) and the tests' and benchmarks' at once."""
    merged: CallConfig | None = None
    for path in settings_files:
        s = load_settings(path, {})
        config = load_call_config(s.config_dir, s.prompts.manifest)
        merged = config if merged is None else dataclasses.replace(
            merged, flows={**merged.flows, **config.flows},
            flow_files={**merged.flow_files, **config.flow_files})
    assert merged is not None, "no settings file given"
    return render_dialplan(merged, app)
