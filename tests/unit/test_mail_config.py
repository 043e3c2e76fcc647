"""config/mail.yaml as ops write it: the example loads, and every mistake is named with its
file, line and field."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from ivr.yamlfile import ConfigError
from mail.config import load_mail_config

ROOT = Path(__file__).resolve().parents[2]
TOPICS, GROUPS = {"generale", "tributi", "suap"}, {"back-office"}

GOOD = """\
    domain: helpdesk.example.it
    smtp: {host: 127.0.0.1, port: 10025, tls: none, user: helpdesk, auth: {password: test}}
    mailboxes:
      cittadini:
        imap: {host: 127.0.0.1, port: 10143, tls: none, user: helpdesk,
               auth: {password: test}}
        topic: generale
        address: helpdesk@helpdesk.example.it
        rules:
          - {subject_words: [rimborso], topic: tributi}
    """


def load(tmp_path: Path, text: str):
    path = tmp_path / "mail.yaml"
    path.write_text(textwrap.dedent(text))
    return load_mail_config(path, TOPICS, GROUPS)


def test_the_example_loads_and_no_file_means_no_mail(tmp_path):
    shutil.copy(ROOT / "config" / "mail.yaml.example", tmp_path / "mail.yaml")
    config = load_mail_config(tmp_path / "mail.yaml", TOPICS, GROUPS)
    assert config is not None and set(config.mailboxes) == {"cittadini", "secondo-livello"}
    assert config.mailboxes["secondo-livello"].group == "back-office"
    assert load_mail_config(tmp_path / "absent.yaml", TOPICS, GROUPS) is None


def test_a_good_file_loads_with_its_defaults(tmp_path):
    config = load(tmp_path, GOOD)
    box = config.mailboxes["cittadini"]
    assert (box.folder, box.done_folder, box.pec, box.acknowledge) == (
        "INBOX", "Elaborati", False, True)
    assert config.sweep_seconds == 60


def test_every_mistake_is_named_with_its_line(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, GOOD.replace("topic: generale", "topic: anagrafe")
             .replace("topic: tributi}", "group: ufficio-legale}"))
    assert [str(p).split("mail.yaml:", 1)[1] for p in refused.value.problems] == [
        ("7:5: mailboxes.cittadini.topic: topic 'anagrafe' takes no written requests "
         "(tickets.yaml has: generale, suap, tributi)"),
        ("10:37: mailboxes.cittadini.rules.0.group: unknown group 'ufficio-legale' "
         "(tickets.yaml has: back-office)"),
    ]


@pytest.mark.parametrize(("change", "where", "message"), [
    (("address: helpdesk@helpdesk.example.it", "address: helpdesk"),
     "mailboxes.cittadini.address", "'helpdesk' is not an e-mail address"),
    (("auth: {password: test}}\n    mailboxes",
      "auth: {password: test, password_env: X}}\n    mailboxes"), "smtp.auth",
     "give exactly one of password, password_env, oauth2_token_command"),
    (("topic: generale", "topic: generale\n        group: back-office"),
     "mailboxes.cittadini", "a mailbox's mail goes to a topic or to a group"),
    (("{subject_words: [rimborso], topic: tributi}", "{topic: tributi}"),
     "mailboxes.cittadini.rules.0", "a rule matches on to_address or on subject_words"),
])
def test_a_wrong_field_is_refused_with_why(tmp_path, change, where, message):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, GOOD.replace(*change))
    [problem] = refused.value.problems
    assert problem.path == where and message in problem.message


def test_a_private_ca_is_a_readable_file_and_needs_tls(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    imap = "imap: {host: 127.0.0.1, port: 10143, tls: none,"
    config = load(tmp_path, GOOD.replace(imap, f"imap: {{host: 127.0.0.1, port: 10143, "
                                               f"tls: starttls, ca_file: {ca},"))
    assert config.mailboxes["cittadini"].imap.ca_file == ca
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, GOOD.replace(imap, "imap: {host: 127.0.0.1, port: 10143, tls: tls, "
                                          "ca_file: ca.pem,"))
    assert "mailboxes.cittadini.imap.ca_file: " in str(refused.value)
    assert "ca.pem is not a file given by its absolute path" in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, GOOD.replace(imap, f"imap: {{host: 127.0.0.1, port: 10143, tls: none, "
                                          f"ca_file: {ca},"))
    assert "ca_file is for tls or starttls" in str(refused.value)
