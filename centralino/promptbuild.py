"""Turn the prompt manifest into the 8 kHz mono 16-bit WAV files Asterisk plays.

Each prompt comes from a recording (prompts/recordings/<lang>/<id>.<ext>) when there is one,
otherwise from placeholder speech of its text (espeak-ng), so a new prompt is audible at once.
The build is incremental: out_dir/index.json remembers a hash of each input, and an output is
regenerated only when its input changed or the file on disk no longer matches its digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

RECORDING_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
RATE = 8000  # what Asterisk's format_wav plays without transcoding
INDEX = "index.json"
VOICES = {"it": "it", "en": "en"}  # anything else: the language code is the espeak voice name
ID_RE = re.compile(r"[a-z0-9_]+")
LANG_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")  # both end up in file paths: no "/" or ".."
ESPEAK_TIMEOUT = 60  # seconds; a hung synthesizer must not hang a config reload


@dataclass(frozen=True)
class BuiltPrompt:
    prompt_id: str
    language: str
    source: Literal["recording", "tts"]
    path: Path  # the built 8 kHz wav, absolute
    digest: str  # sha256 hex of the built file's bytes
    duration: float  # seconds


@dataclass
class BuildReport:
    built: list[BuiltPrompt] = field(default_factory=list)  # every prompt now available
    rebuilt: list[str] = field(default_factory=list)  # "lang/id" (re)generated this run
    removed: list[str] = field(default_factory=list)  # "lang/id" deleted: gone from the manifest
    errors: list[str] = field(default_factory=list)  # human readable, one per failed prompt


class PromptBuildError(Exception):
    """The build as a whole cannot proceed (out_dir unwritable, unreadable index.json)."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_raw_index(out_dir: Path) -> dict[str, dict]:
    try:
        raw = json.loads((out_dir / INDEX).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise PromptBuildError(f"{out_dir / INDEX}: unreadable: {e}") from e
    if not isinstance(raw, dict):
        raise PromptBuildError(f"{out_dir / INDEX}: not a JSON object")
    return raw


def read_index(out_dir: Path) -> dict[str, BuiltPrompt]:
    """The built prompts by "lang/id"; {} if nothing was built. Entries whose file has
    disappeared are left out, so callers see them as missing rather than fail at play time."""
    out_dir = Path(out_dir).resolve()
    prompts = {}
    for key, entry in _load_raw_index(out_dir).items():
        language, _, prompt_id = key.partition("/")
        path = out_dir / language / f"{prompt_id}.wav"  # derived, so the build dir can move
        if path.is_file():
            prompts[key] = BuiltPrompt(prompt_id, language, entry["source"], path,
                                       entry["digest"], float(entry["duration"]))
    return prompts


def _decode(data: bytes) -> tuple[np.ndarray, int]:
    # From the very bytes we hashed, so the index can never describe a different input.
    audio, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    if len(audio) == 0:
        raise ValueError("no audio in file")
    return audio, rate


def _speak(espeak: str, voice: str, text: str, tmp: Path) -> tuple[np.ndarray, int]:
    wav = tmp / "tts.wav"
    wav.unlink(missing_ok=True)
    # No shell, and "--" so a text starting with "-" is not taken for an option.
    try:
        proc = subprocess.run([espeak, "-v", voice, "-w", str(wav), "--", text],  # noqa: S603
                              capture_output=True, text=True, timeout=ESPEAK_TIMEOUT, check=False)
    except FileNotFoundError:
        raise RuntimeError(f"{espeak} not found (is espeak-ng installed?)") from None
    stderr = proc.stderr.strip()
    if proc.returncode != 0:
        raise RuntimeError(f"{espeak} exited with {proc.returncode}: {stderr or 'no message'}")
    if not wav.exists():  # espeak-ng exits 0 when it cannot write the file
        raise RuntimeError(f"{espeak} wrote no audio: {stderr or 'no message'}")
    return _decode(wav.read_bytes())


def _write(audio: np.ndarray, rate: int, dest: Path) -> tuple[str, float]:
    """Mono, 8 kHz, 16-bit; written beside dest and renamed so nobody plays half a file."""
    mono = audio.mean(axis=1)
    if rate != RATE:
        mono = soxr.resample(mono, rate, RATE, quality="HQ")
    mono = np.clip(mono, -1.0, 1.0)  # resampling overshoots near full scale
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    sf.write(tmp, mono, RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, dest)
    return _sha256(dest.read_bytes()), len(mono) / RATE


def _write_index(out_dir: Path, index: dict[str, dict]) -> None:
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".index.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out_dir / INDEX)  # readers see the old index or the new one, never half


def build_prompts(manifest: Mapping[str, Mapping[str, str]], recordings_dir: Path, out_dir: Path,
                  *, espeak: str = "espeak-ng") -> BuildReport:
    recordings_dir, out_dir = Path(recordings_dir), Path(out_dir).resolve()
    report = BuildReport()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        old = _load_raw_index(out_dir)
    except PromptBuildError:
        old = {}  # the index is only a cache: rebuild everything
    except OSError as e:
        raise PromptBuildError(f"{out_dir}: cannot create: {e}") from e
    index: dict[str, dict] = {}
    wanted = {f"{lang}/{pid}" for pid, texts in manifest.items() for lang in texts}

    with tempfile.TemporaryDirectory(prefix="promptbuild-") as tmp:
        for prompt_id, texts in sorted(manifest.items()):
            for language, text in sorted(texts.items()):
                key = f"{language}/{prompt_id}"
                if not ID_RE.fullmatch(prompt_id) or not LANG_RE.fullmatch(language):
                    report.errors.append(f"{key}: invalid prompt id or language code")
                    continue
                dest = out_dir / language / f"{prompt_id}.wav"
                recording = next((p for ext in RECORDING_EXTENSIONS
                                  if (p := recordings_dir / language / f"{prompt_id}{ext}")
                                  .is_file()), None)
                voice = VOICES.get(language, language)
                try:
                    if recording is not None:
                        source, data = "recording", recording.read_bytes()
                        input_hash = _sha256(data)
                    else:
                        source, input_hash = "tts", _sha256(f"tts:{voice}{text}".encode())
                    prev = old.get(key)
                    if (prev and prev.get("input") == input_hash and dest.is_file()
                            and _sha256(dest.read_bytes()) == prev.get("digest")):
                        entry = prev  # unchanged input, intact output
                    else:
                        if recording is not None:
                            audio, rate = _decode(data)
                        elif not text.strip():
                            report.errors.append(f"{key}: no recording and no text to speak")
                            continue
                        else:
                            audio, rate = _speak(espeak, voice, text, Path(tmp))
                        digest, duration = _write(audio, rate, dest)
                        entry = {"source": source, "digest": digest,
                                 "duration": round(duration, 4), "input": input_hash}
                        report.rebuilt.append(key)
                except (sf.SoundFileError, ValueError) as e:
                    what = recording if recording is not None else key
                    reason = getattr(e, "error_string", None) or e
                    report.errors.append(f"{what}: cannot decode: {reason}")
                    continue  # no TTS stand-in: a broken recording must be noticed
                except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                    what = recording if recording is not None else f"{key} (tts, voice {voice})"
                    report.errors.append(f"{what}: {e}")
                    continue
                index[key] = entry
                report.built.append(BuiltPrompt(prompt_id, language, entry["source"], dest,
                                                entry["digest"], entry["duration"]))

    # A failed prompt keeps its old file on disk but leaves the index, so the service sees
    # it as missing and refuses the new config, while the running config can still play it.
    stale = set(old) | {f"{p.parent.name}/{p.stem}" for p in out_dir.glob("*/*.wav")}
    for key in sorted(stale - wanted):
        language, _, prompt_id = key.partition("/")
        if not ID_RE.fullmatch(prompt_id) or not LANG_RE.fullmatch(language):
            continue  # never delete outside out_dir on the word of a tampered index
        (out_dir / language / f"{prompt_id}.wav").unlink(missing_ok=True)
        report.removed.append(key)
        try:
            (out_dir / language).rmdir()  # only succeeds once a language is gone entirely
        except OSError:
            pass
    try:
        _write_index(out_dir, index)
    except OSError as e:
        raise PromptBuildError(f"{out_dir / INDEX}: cannot write: {e}") from e
    return report
