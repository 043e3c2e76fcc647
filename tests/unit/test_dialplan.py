"""The dialplan that the development Asterisk runs for several configurations at once
(the example's numbers, the integration tests' and the benchmarks')."""

from __future__ import annotations

import re
from pathlib import Path

from centralino.dialplan import INBOUND_CONTEXT, render_dialplan, render_merged
from centralino.settings import load_settings
from ivr.config import load_call_config

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = [ROOT / "config" / "centralino.yaml",
            ROOT / "tests" / "integration" / "config" / "centralino.yaml",
            ROOT / "bench" / "config" / "centralino.yaml"]


def numbers_of(settings_file: Path) -> set[str]:
    s = load_settings(settings_file, {})
    return set(load_call_config(s.config_dir, s.prompts.manifest).flows)


def routed(dialplan: str, app: str) -> list[str]:
    """The numbers whose first step hands the call to `app`, in the order written."""
    return re.findall(r"^exten => (\w+),1,Set\(CHANNEL\(language\)=\w+\)\n"
                      rf" same => n,Stasis\({re.escape(app)},\$\{{EXTEN\}}\)$",
                      dialplan, re.MULTILINE)


def test_every_number_of_every_configuration_reaches_the_application() -> None:
    text = render_merged(SETTINGS, "centralino-test")
    wanted = set().union(*(numbers_of(s) for s in SETTINGS))
    assert routed(text, "centralino-test") == sorted(wanted)
    assert all(numbers_of(s) for s in SETTINGS)  # each configuration brings numbers
    assert text.count(f"[{INBOUND_CONTEXT}]") == 1
    assert text.count("[centralino-unavailable]") == 1


def test_merging_one_configuration_is_rendering_it() -> None:
    example = load_settings(SETTINGS[0], {})
    config = load_call_config(example.config_dir, example.prompts.manifest)
    assert render_merged(SETTINGS[:1], "centralino") == render_dialplan(config, "centralino")
