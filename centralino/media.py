"""Where Asterisk finds our prompts: URLs on our own HTTP server, with a content hash in them.

Asterisk (res_http_media_cache) caches by URL, so a changed recording gets a new URL and is
fetched again, and Asterisk needs no shared folder with us (chroot, container or another host).
"""

from __future__ import annotations

from pathlib import Path

from centralino.promptbuild import BuiltPrompt, read_index

STANDARD = "sound:"  # Asterisk's own sounds (digits, queue phrases) pass through unchanged


class PromptCatalog:
    def __init__(self, build_dir: Path, public_url: str):
        self.build_dir = build_dir
        self.public_url = public_url.rstrip("/")
        self.built: dict[str, BuiltPrompt] = read_index(build_dir)

    def uri(self, prompt_id: str, language: str) -> str:
        if prompt_id.startswith(STANDARD):
            return prompt_id
        built = self.built.get(f"{language}/{prompt_id}")
        if built is None:
            # Checked at start and reload (missing()); reaching here means a build was skipped.
            raise LookupError(f"prompt {language}/{prompt_id} has not been built")
        return f"sound:{self.public_url}/prompts/{language}/{built.digest[:16]}/{prompt_id}.wav"

    def path(self, language: str, prompt_id: str) -> Path | None:
        built = self.built.get(f"{language}/{prompt_id}")
        return built.path if built else None

    def is_current(self, language: str, prompt_id: str, digest: str) -> bool:
        """The URL's digest is the built file's (as `uri` wrote it)."""
        built = self.built.get(f"{language}/{prompt_id}")
        return built is not None and digest == built.digest[:16]

    def missing(self, wanted: dict[str, dict[str, str]]) -> list[str]:
        """lang/id of manifest prompts that have no built audio."""
        return sorted(f"{lang}/{pid}" for pid, texts in wanted.items() for lang in texts
                      if f"{lang}/{pid}" not in self.built)
