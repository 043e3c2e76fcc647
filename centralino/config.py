"""The whole configuration the service runs on: call flows (ivr) and agents (cti)."""

from __future__ import annotations

from dataclasses import dataclass

from centralino.settings import Settings
from cti.config import AgentsConfig, load_agents_config
from ivr.config import CallConfig, load_call_config
from ivr.yamlfile import ConfigError, ConfigProblem
from mail.config import MailConfig, load_mail_config
from tickets.config import TicketsConfig, load_tickets_config


@dataclass(frozen=True)
class Config:
    call: CallConfig
    agents: AgentsConfig
    tickets: TicketsConfig | None = None  # no tickets.yaml: no written requests
    mail: MailConfig | None = None  # no mail.yaml: no e-mail

    @property
    def version(self) -> str:
        """The call flows' version (what call records name), plus the agents file's."""
        if not self.agents.digest:
            return self.call.version
        return f"{self.call.version}-{self.agents.digest[:6]}"


def load_config(settings: Settings) -> Config:
    """Everything under config_dir; one ConfigError listing every problem found."""
    call = load_call_config(settings.config_dir, settings.prompts.manifest)
    agents = load_agents_config(settings.config_dir / "agents.yaml", set(call.queues))
    if recalls := settings.recalls.problems(set(call.schedules), set(call.queues)):
        raise ConfigError([ConfigProblem("centralino.yaml", 1, 1, f, m) for f, m in recalls])
    keyed = sorted(t for t, q in call.queues.items() if q.callback_key)
    if settings.mode == "production" and keyed and (why := settings.recalls.not_ready_to_call()):
        raise ConfigError.single("queues.yaml", f"production mode: {', '.join(keyed)} offer "
                                 f"the callback key, but {why[0]} (centralino.yaml)")
    if settings.mode == "production" and (dev := agents.dev_tokens_in_use()):
        raise ConfigError.single("agents.yaml", f"production mode: {', '.join(dev)} still use "
                                 "the public development token; give them their own")
    tickets = load_tickets_config(settings.config_dir / "tickets.yaml", set(call.queues),
                                  set(agents.agents), set(call.schedules))
    mail = load_mail_config(settings.config_dir / "mail.yaml",
                            set(tickets.topics) if tickets else set(),
                            set(tickets.groups) if tickets else set())
    if mail is not None and settings.mode == "production" and (
            plain := [n for n, b in mail.mailboxes.items() if b.imap.auth.password]
            + (["smtp"] if mail.smtp.auth.password else [])):
        raise ConfigError.single("mail.yaml", f"production mode: {', '.join(plain)}: a "
                                 "password written in the file; use password_env or "
                                 "oauth2_token_command")
    return Config(call, agents, tickets, mail)
