"""Prompt build with real audio files and the real espeak-ng: what Asterisk would get."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from centralino.promptbuild import (
    BuildReport,
    BuiltPrompt,
    PromptBuildError,
    build_prompts,
    read_index,
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng")

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
if "MP3" in sf.available_formats():
    FORMATS[".mp3"] = ("MP3", "MPEG_LAYER_III")


def sine(freq=440.0, seconds=1.5, rate=44100):
    t = np.arange(int(seconds * rate)) / rate
    left = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([left, 0.8 * left], axis=1), rate  # stereo, channels differ in level


def record(recordings, lang, prompt_id, ext=".wav", freq=440.0, seconds=1.5):
    fmt, subtype = FORMATS[ext]
    path = recordings / lang / f"{prompt_id}{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    audio, rate = sine(freq, seconds)
    sf.write(path, audio, rate, format=fmt, subtype=subtype)
    return path


def dominant_freq(audio, rate):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)]


def assert_asterisk_wav(path):
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == \
        ("WAV", "PCM_16", 8000, 1)
    assert path.read_bytes()[:4] == b"RIFF"


def build(tmp_path, manifest, **kw) -> BuildReport:
    return build_prompts(manifest, tmp_path / "rec", tmp_path / "out", **kw)


@pytest.mark.parametrize("ext", list(FORMATS))
def test_recording_becomes_8k_mono_pcm16_and_keeps_its_pitch_and_length(tmp_path, ext):
    record(tmp_path / "rec", "it", "welcome", ext)
    report = build(tmp_path, {"welcome": {"it": "Benvenuto"}})

    assert report.errors == [] and report.rebuilt == ["it/welcome"]
    [built] = report.built
    out = tmp_path / "out" / "it" / "welcome.wav"
    assert built == BuiltPrompt("welcome", "it", "recording", out.resolve(),
                                hashlib.sha256(out.read_bytes()).hexdigest(), built.duration)
    assert_asterisk_wav(out)
    audio, rate = sf.read(out)
    assert abs(len(audio) / rate - 1.5) < 0.02 and abs(built.duration - 1.5) < 0.02
    assert abs(dominant_freq(audio, rate) - 440) < 3
    assert np.max(np.abs(audio)) > 0.3  # mixed down, not attenuated to nothing


def test_first_extension_in_order_wins(tmp_path):
    record(tmp_path / "rec", "it", "welcome", ".wav", freq=440)
    record(tmp_path / "rec", "it", "welcome", ".flac", freq=880)
    build(tmp_path, {"welcome": {"it": "x"}})
    audio, rate = sf.read(tmp_path / "out" / "it" / "welcome.wav")
    assert abs(dominant_freq(audio, rate) - 440) < 3


@needs_espeak
def test_prompt_without_recording_gets_placeholder_speech(tmp_path):
    report = build(tmp_path, {"welcome": {"it": "Benvenuti nel servizio di assistenza.",
                                          "en": "-Welcome to the help desk."}})

    assert report.errors == []
    assert sorted(report.rebuilt) == ["en/welcome", "it/welcome"]
    for built in report.built:
        assert built.source == "tts"
        assert_asterisk_wav(built.path)
        audio, _ = sf.read(built.path)
        assert built.duration > 0.3 and np.sqrt(np.mean(audio ** 2)) > 0.01
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert set(index) == {"en/welcome", "it/welcome"}
    assert index["it/welcome"]["input"] == hashlib.sha256(
        b"tts:itBenvenuti nel servizio di assistenza.").hexdigest()


@needs_espeak
def test_second_run_reuses_everything(tmp_path):
    record(tmp_path / "rec", "it", "welcome")
    manifest = {"welcome": {"it": "Benvenuto", "en": "Welcome"}, "goodbye": {"it": "Ciao"}}
    first = build(tmp_path, manifest)
    mtimes = {b.path: b.path.stat().st_mtime_ns for b in first.built}

    second = build(tmp_path, manifest)

    assert first.errors == second.errors == []
    assert len(first.rebuilt) == 3 and second.rebuilt == [] and second.removed == []
    assert second.built == first.built
    assert {b.path: b.path.stat().st_mtime_ns for b in second.built} == mtimes
    assert read_index(tmp_path / "out") == {f"{b.language}/{b.prompt_id}": b
                                            for b in second.built}


@needs_espeak
def test_only_the_changed_prompt_is_rebuilt(tmp_path):
    manifest = {"welcome": {"it": "Benvenuto", "en": "Welcome"}, "goodbye": {"it": "Ciao"}}
    first = build(tmp_path, manifest)

    manifest["welcome"]["en"] = "Welcome to the help desk"
    second = build(tmp_path, manifest)
    assert second.rebuilt == ["en/welcome"]
    old = {b.path: b.digest for b in first.built}
    assert [b.path.name for b in second.built if b.digest != old[b.path]] == ["welcome.wav"]

    record(tmp_path / "rec", "it", "goodbye")  # a recording arrives for a TTS prompt
    third = build(tmp_path, manifest)
    assert third.rebuilt == ["it/goodbye"]
    assert {b.prompt_id: b.source for b in third.built if b.language == "it"} == \
        {"goodbye": "recording", "welcome": "tts"}

    record(tmp_path / "rec", "it", "goodbye", freq=880)  # the recording is replaced
    assert build(tmp_path, manifest).rebuilt == ["it/goodbye"]


def test_damaged_output_is_rebuilt(tmp_path):
    record(tmp_path / "rec", "it", "welcome")
    manifest = {"welcome": {"it": "x"}}
    first = build(tmp_path, manifest)
    first.built[0].path.write_bytes(b"truncated")

    second = build(tmp_path, manifest)
    assert second.rebuilt == ["it/welcome"] and second.built == first.built


@needs_espeak
def test_prompts_gone_from_the_manifest_are_deleted(tmp_path):
    manifest = {"welcome": {"it": "Benvenuto", "en": "Welcome"}, "goodbye": {"it": "Ciao"}}
    build(tmp_path, manifest)

    report = build(tmp_path, {"welcome": {"it": "Benvenuto"}})

    assert report.rebuilt == [] and sorted(report.removed) == ["en/welcome", "it/goodbye"]
    out = tmp_path / "out"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == ["it/welcome.wav"]
    assert set(read_index(out)) == {"it/welcome"}


@needs_espeak
def test_undecodable_recording_is_reported_and_not_replaced_by_tts(tmp_path):
    bad = tmp_path / "rec" / "it" / "welcome.wav"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"this is not audio at all" * 50)

    report = build(tmp_path, {"welcome": {"it": "Benvenuto"}, "goodbye": {"it": "Ciao"}})

    [error] = report.errors
    assert str(bad) in error and "cannot decode" in error
    assert [b.prompt_id for b in report.built] == ["goodbye"]
    assert not (tmp_path / "out" / "it" / "welcome.wav").exists()
    assert set(read_index(tmp_path / "out")) == {"it/goodbye"}


def test_missing_espeak_is_an_error_not_an_exception(tmp_path):
    record(tmp_path / "rec", "it", "welcome")
    report = build(tmp_path, {"welcome": {"it": "Benvenuto"}, "goodbye": {"it": "Ciao"}},
                   espeak="/nonexistent/espeak-ng")

    [error] = report.errors
    assert "it/goodbye" in error and "/nonexistent/espeak-ng" in error
    assert [b.prompt_id for b in report.built] == ["welcome"]
    assert not (tmp_path / "out" / "it" / "goodbye.wav").exists()


@needs_espeak
def test_failing_espeak_reports_its_stderr(tmp_path):
    report = build(tmp_path, {"welcome": {"xx": "hello"}})  # no such espeak voice
    [error] = report.errors
    assert "xx/welcome" in error and "voice" in error.lower()
    assert report.built == []


def test_unsafe_ids_are_rejected_without_touching_files(tmp_path):
    report = build(tmp_path, {"../escape": {"it": "x"}, "ok": {"../it": "x"}},
                   espeak="/nonexistent/espeak-ng")
    assert len(report.errors) == 2 and report.built == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_read_index_of_nothing_and_of_garbage(tmp_path):
    assert read_index(tmp_path / "never-built") == {}
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(PromptBuildError):
        read_index(tmp_path)
