"""Render the Asterisk dialplan that hands each configured number to our Stasis application."""

from __future__ import annotations

from ivr.config import CallConfig

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
