"""Where Asterisk finds the prompts: URLs on centralino's HTTP server with the built file's
digest in them, from a real prompt build (recordings in tmp_path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from centralino.media import PromptCatalog
from centralino.promptbuild import build_prompts

MANIFEST = {"welcome": {"it": "Benvenuto", "en": "Welcome"}, "menu": {"it": "Premere 1"}}


def record(recordings: Path, lang: str, prompt_id: str, freq: float = 440.0) -> None:
    path = recordings / lang / f"{prompt_id}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(4000) / 8000
    sf.write(path, 0.5 * np.sin(2 * np.pi * freq * t), 8000)


def built(tmp_path: Path, public_url: str = "http://10.0.0.5:8080/") -> PromptCatalog:
    """Build what has a recording (espeak is not needed: the rest stays unbuilt)."""
    report = build_prompts({pid: texts for pid, texts in MANIFEST.items()
                            if all((tmp_path / "rec" / lang / f"{pid}.wav").exists()
                                   for lang in texts)},
                           tmp_path / "rec", tmp_path / "out")
    assert report.errors == []
    return PromptCatalog(tmp_path / "out", public_url)


def test_a_built_prompt_is_served_by_a_url_with_its_digest(tmp_path: Path) -> None:
    record(tmp_path / "rec", "it", "welcome")
    record(tmp_path / "rec", "en", "welcome")
    catalog = built(tmp_path)
    digest = catalog.built["it/welcome"].digest
    assert catalog.uri("welcome", "it") == (
        f"sound:http://10.0.0.5:8080/prompts/it/{digest[:16]}/welcome.wav")
    assert catalog.uri("welcome", "en").startswith("sound:http://10.0.0.5:8080/prompts/en/")
    assert catalog.path("it", "welcome") == tmp_path.resolve() / "out" / "it" / "welcome.wav"
    assert catalog.is_current("it", "welcome", digest[:16])


def test_a_changed_recording_gets_a_new_url(tmp_path: Path) -> None:
    """Asterisk caches by URL: a new recording must not be played from its cache."""
    record(tmp_path / "rec", "it", "welcome")
    record(tmp_path / "rec", "en", "welcome")
    before = built(tmp_path)
    old = before.uri("welcome", "it").split("/")[-2]
    record(tmp_path / "rec", "it", "welcome", freq=880.0)
    after = built(tmp_path)
    assert after.uri("welcome", "it") != before.uri("welcome", "it")
    assert after.uri("welcome", "en") == before.uri("welcome", "en")
    assert not after.is_current("it", "welcome", old)  # an old URL Asterisk still asks for


def test_standard_sounds_pass_through(tmp_path: Path) -> None:
    catalog = built(tmp_path)
    assert catalog.uri("sound:digits/3", "it") == "sound:digits/3"
    assert catalog.uri("sound:queue-thankyou", "en") == "sound:queue-thankyou"


def test_a_prompt_not_built_is_missing_and_has_no_url(tmp_path: Path) -> None:
    record(tmp_path / "rec", "it", "welcome")
    record(tmp_path / "rec", "en", "welcome")
    catalog = built(tmp_path)
    assert catalog.missing(MANIFEST) == ["it/menu"]
    assert catalog.missing({"welcome": {"it": "x", "fr": "y"}, "bye": {"en": "z"}}) == [
        "en/bye", "fr/welcome"]
    with pytest.raises(LookupError, match=r"^prompt it/menu has not been built$"):
        catalog.uri("menu", "it")
    assert catalog.path("it", "menu") is None
    assert not catalog.is_current("it", "menu", "0" * 16)


def test_nothing_built_yet_means_every_prompt_is_missing(tmp_path: Path) -> None:
    catalog = PromptCatalog(tmp_path / "never-built", "http://127.0.0.1:8080")
    assert catalog.missing(MANIFEST) == ["en/welcome", "it/menu", "it/welcome"]
