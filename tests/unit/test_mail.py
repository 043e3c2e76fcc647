"""E-mail to the help desk, the rules (issue #12) on a corpus of the shapes real clients and
servers send (tests/unit/mail_corpus): what a message is and whether it is answered, which
ticket it joins, what the operator reads of it, what a PEC envelope and its receipts hold."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from pathlib import Path

import pytest

from mail import content, kinds, pec, threads

CORPUS = Path(__file__).parent / "mail_corpus"
DOMAIN = "helpdesk.example.it"
PREFIX = "HD"
OUR_ID = "<HD-2026-000123.0a1b2c3d4e5f@helpdesk.example.it>"
# The tiny PDF the corpus attaches (base64 in the files).
PDF = base64.b64decode("JVBERi0xLjQKJeLjz9MKMSAwIG9iago8PCAvVHlwZSAvQ2F0YWxvZyA+PgplbmRvYmoK"
                       "dHJhaWxlcgo8PCAvUm9vdCAxIDAgUiA+PgolJUVPRgo=")

KINDS: dict[str, kinds.Kind] = {
    "ooo_it.eml": "auto",  # Exchange: Auto-Submitted, X-Auto-Response-Suppress
    "ooo_en.eml": "auto",  # Gmail's vacation responder: Auto-Submitted only
    "ooo_sieve.eml": "auto",  # Dovecot's Sieve vacation: a null return path, yet no bounce
    "ooo_subject_only.eml": "auto",  # Outlook Express: nothing but "Fuori ufficio:"
    "list.eml": "auto",  # Mailman: List-Id, List-Unsubscribe, Precedence: list
    "dsn_postfix.eml": "bounce",
    "dsn_exchange.eml": "bounce",
    "pec_receipt_accettazione.eml": "pec_receipt",
    "pec_receipt_consegna.eml": "pec_receipt",
    "pec_receipt_errore.eml": "pec_receipt",
    "plain_request.eml": "person",
    "latin1_rfc2231.eml": "person",
    "html_only.eml": "person",
    "forwarded.eml": "person",
    "reply_outlook.eml": "person",
    "reply_gmail_rewritten.eml": "person",
    "signed_smime.eml": "person",
    "inline_screenshot.eml": "person",
    "pec_envelope.eml": "person",  # the citizen's PEC: its provider's envelope
    "broken.eml": "person",
}


def load(name: str) -> EmailMessage:
    return content.parse((CORPUS / name).read_bytes())


def variant(name: str, **headers: str | None) -> EmailMessage:
    """A corpus message with headers replaced (None: removed); In_Reply_To: In-Reply-To."""
    message = load(name)
    for key, value in headers.items():
        header = key.replace("_", "-")
        del message[header]
        if value is not None:
            message[header] = value
    return message


def thread_holding(held: dict[str, str]) -> Callable[[list[str]], str | None]:
    """known_ids as the shell answers it: the ticket of the first id some thread holds."""
    return lambda ids: next((held[i] for i in ids if i in held), None)


def people(tickets: dict[str, list[str]]) -> Callable[[str], Iterable[str]]:
    return lambda number: tickets.get(number, [])


def match(message: EmailMessage, held: dict[str, str] | None = None,
          tickets: dict[str, list[str]] | None = None) -> threads.Match:
    return threads.match(message, DOMAIN, PREFIX, thread_holding(held or {}),
                         people(tickets or {}))


# --- what a message is -------------------------------------------------------------------------

def test_the_corpus_is_all_classified_here() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(KINDS)


@pytest.mark.parametrize(("name", "expected"), KINDS.items())
def test_each_message_is_told_apart_as_a_person_an_automatic_answer_a_bounce_or_a_receipt(
        name: str, expected: str) -> None:
    assert kinds.kind(load(name)) == expected


@pytest.mark.parametrize("name", KINDS)
def test_only_a_person_with_an_address_is_sent_an_acknowledgement(name: str) -> None:
    # broken.eml's From is `Mario ROSSI <mario@@example..com`: no address the parser can read.
    expected = KINDS[name] == "person" and name != "broken.eml"
    assert kinds.answerable(load(name)) is expected


def test_the_citizen_inside_a_pec_envelope_is_a_person_who_gets_an_answer() -> None:
    original = pec.unwrap(load("pec_envelope.eml"))
    assert kinds.kind(original) == "person"
    assert kinds.answerable(original)


@pytest.mark.parametrize("from_", [None, "", "<>", "Mario Rossi"])
def test_a_message_without_a_sender_address_is_never_answered(from_: str | None) -> None:
    message = variant("plain_request.eml", From=from_)
    assert kinds.kind(message) == "person"
    assert not kinds.answerable(message)


def test_a_vacation_reply_sent_with_a_null_return_path_flags_no_address_as_bouncing() -> None:
    message = load("ooo_sieve.eml")
    assert message["Return-Path"] == "<>"
    assert kinds.kind(message) == "auto"


def test_a_message_with_a_null_return_path_and_no_automatic_mark_is_a_bounce() -> None:
    # qmail's "failure notice": plain text, from MAILER-DAEMON, no Auto-Submitted.
    message = content.parse(
        b"Return-Path: <>\nFrom: MAILER-DAEMON@mail.example.net\nTo: helpdesk@helpdesk.example.it"
        b"\nSubject: failure notice\n\nHi. This is the qmail-send program at mail.example.net.\n"
        b"I'm afraid I wasn't able to deliver your message to the following addresses.\n")
    assert kinds.kind(message) == "bounce"


@pytest.mark.parametrize(("from_", "expected"), [
    ("Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>", "bounce"),
    ("Poste Delivery <noreply@poste.example.it>", "auto"),  # a courier's notice, no bounce
])
def test_only_the_mailer_daemon_writes_delivery_failures(from_: str, expected: str) -> None:
    message = variant("plain_request.eml", From=from_,
                      Subject="Delivery Status Notification (Failure)")
    assert kinds.kind(message) == expected


@pytest.mark.parametrize("subject", ["Risposta automatica: la sua richiesta", "Fuori ufficio",
                                     "Automatic reply: [HD-2026-000123]", "Out of Office"])
def test_an_out_of_office_is_known_by_its_subject_when_its_headers_say_nothing(
        subject: str) -> None:
    assert kinds.kind(variant("plain_request.eml", Subject=subject)) == "auto"


@pytest.mark.parametrize("from_", ['a@[', '"', 'Ufficio :; <x@y.it>', '<'])
def test_a_from_header_the_parser_fails_on_stops_none_of_the_rules(from_: str) -> None:
    # The standard library raises IndexError or AttributeError reading each of these.
    message = content.parse(f"From: {from_}\nTo: helpdesk@helpdesk.example.it\n"
                            f"Subject: aiuto\n\ntesto\n".encode())
    assert kinds.kind(message) == "person"
    if "@" not in from_:
        assert not kinds.answerable(message)
    assert match(message).how == "new"
    read = content.read(message)
    assert (read.text, read.sender) == ("testo", from_)  # the From as it came, and said
    assert read.problems[0].startswith("From: ")


# --- which ticket ------------------------------------------------------------------------------

def test_a_reply_joins_the_ticket_our_message_id_names_in_in_reply_to() -> None:
    assert match(load("reply_outlook.eml")) == threads.Match("HD-2026-000123", "in-reply-to")


def test_references_find_the_ticket_when_in_reply_to_names_someone_elses_message() -> None:
    message = variant("reply_gmail_rewritten.eml",
                      References=f"{OUR_ID} <CAGk7mT5hX2pLq9Vz0Nb4Rc6Sd8Wf1Yg3Zh5Ji7Ka9Lb0Mc"
                                 "@mail.gmail.com>")
    assert match(message) == threads.Match("HD-2026-000123", "references")


def test_a_reply_to_a_message_a_thread_holds_joins_that_ticket() -> None:
    # The citizen answers the operator's colleague, or their own earlier message in the thread.
    held = {"<CAGk7mT5hX2pLq9Vz0Nb4Rc6Sd8Wf1Yg3Zh5Ji7Ka9Lb0Mc@mail.gmail.com>": "HD-2026-000077"}
    assert match(load("reply_gmail_rewritten.eml"), held) == threads.Match("HD-2026-000077",
                                                                          "in-reply-to")


def test_a_message_id_of_another_desks_domain_names_no_ticket_of_ours() -> None:
    message = variant("reply_outlook.eml", In_Reply_To="<HD-2026-000123.0a1b2c@other.example>",
                      References=None, Subject="R: la sua richiesta")
    assert match(message) == threads.Match(None, "new")


@pytest.mark.parametrize(("participants", "expected"), [
    (["Giulia.Bianchi@example.com"], threads.Match("HD-2026-000123", "subject")),
    (["someone.else@example.com"], threads.Match(None, "new")),
    ([], threads.Match(None, "new")),
], ids=["a participant", "a stranger", "nobody"])
def test_the_number_in_the_subject_joins_only_a_participants_message(
        participants: list[str], expected: threads.Match) -> None:
    message = load("reply_gmail_rewritten.eml")  # its References lost our id
    assert match(message, tickets={"HD-2026-000123": participants}) == expected


def test_a_stranger_quoting_someone_elses_ticket_number_opens_a_new_ticket() -> None:
    message = variant("plain_request.eml", Subject="Come HD-2026-000123, anche io non accedo")
    tickets = {"HD-2026-000123": ["giulia.bianchi@example.com"]}
    assert match(message, tickets=tickets) == threads.Match(None, "new")


@pytest.mark.parametrize("name", ["plain_request.eml", "latin1_rfc2231.eml", "html_only.eml",
                                  "forwarded.eml", "signed_smime.eml", "list.eml"])
def test_a_first_message_opens_a_new_ticket(name: str) -> None:
    assert match(load(name)) == threads.Match(None, "new")


@pytest.mark.parametrize(("name", "number"), [
    ("ooo_it.eml", "HD-2026-000123"), ("ooo_en.eml", "HD-2026-000124"),
    ("ooo_sieve.eml", "HD-2026-000127"), ("ooo_subject_only.eml", "HD-2026-000123"),
])
def test_an_out_of_office_is_kept_on_the_ticket_it_answers(name: str, number: str) -> None:
    assert match(load(name)).number == number


@pytest.mark.parametrize(("name", "number"), [
    ("dsn_postfix.eml", "HD-2026-000123"),  # only inside the returned headers
    ("dsn_exchange.eml", "HD-2026-000125"),  # In-Reply-To, and the returned message
])
def test_a_bounce_reaches_the_ticket_whose_message_bounced(name: str, number: str) -> None:
    assert match(load(name)).number == number


def test_a_postfix_bounce_names_the_message_it_returns() -> None:
    assert threads.referenced(load("dsn_postfix.eml")) == [
        "<HD-2026-000123.a1b2c3d4e5f6@helpdesk.example.it>"]


def test_message_ids_we_make_are_read_back_as_their_ticket_and_never_repeat() -> None:
    made = [threads.message_id("HD-2026-000123", DOMAIN) for _ in range(50)]
    assert len(set(made)) == 50
    assert all(m.startswith("<HD-2026-000123.") and m.endswith("@helpdesk.example.it>")
               for m in made)
    assert {threads.ours([m], DOMAIN) for m in made} == {"HD-2026-000123"}
    assert threads.ours([made[0]], "HELPDESK.example.it") == "HD-2026-000123"
    assert threads.ours([made[0]], "other.example") is None


def test_ours_takes_the_first_of_our_ids_and_ignores_everyone_elses() -> None:
    ids = ["<CAGk7mT5hX2p@mail.gmail.com>", "<HD-2026-000200.ab12@helpdesk.example.it>",
           "<HD-2026-000300.cd34@helpdesk.example.it>"]
    assert threads.ours(ids, DOMAIN) == "HD-2026-000200"
    assert threads.ours(ids[:1], DOMAIN) is None
    assert threads.ours([], DOMAIN) is None


def test_referenced_lists_in_reply_to_then_references_newest_first_without_repeats() -> None:
    message = content.parse(b"From: a@example.it\nIn-Reply-To: <c@x> (Help desk's message)\n"
                            b"References: <a@x>\n <b@x>\n\t<c@x>\nSubject: Re: x\n\ntesto\n")
    assert threads.referenced(message) == ["<c@x>", "<b@x>", "<a@x>"]
    assert threads.referenced(variant("reply_outlook.eml", In_Reply_To=None,
                                      References=None)) == []


def test_the_sender_is_the_reply_to_address_lower_case() -> None:
    assert threads.sender(load("reply_outlook.eml")) == "giulia.bianchi@example.com"
    assert threads.sender(load("pec_envelope.eml")) == "mario.rossi@pec.it"  # "Per conto di"
    assert threads.sender(variant("plain_request.eml", From=None)) == ""


# --- what the operator reads -------------------------------------------------------------------

def test_latin1_text_and_subject_are_read_with_their_accents() -> None:
    read = content.read(load("latin1_rfc2231.eml"))
    assert read.subject == "Rimborso TARI: pagamento già effettuato"
    assert "il pagamento della TARI è già stato effettuato" in read.text
    assert "può verificare?" in read.text
    assert read.sender == "Anna Ferri <anna.ferri@tiscali.it>"
    assert read.date is not None and read.date.isoformat() == "2026-03-09T11:30:05+01:00"
    assert read.problems == []


def test_an_rfc2231_file_name_is_decoded_and_its_file_kept_byte_for_byte() -> None:
    [attachment] = content.read(load("latin1_rfc2231.eml")).attachments
    assert attachment == content.Part("Ricevuta pagamento è.pdf", "application/pdf", PDF)


def test_html_only_mail_is_read_as_text_and_shown_without_scripts_handlers_or_remote_images(
) -> None:
    read = content.read(load("html_only.eml"))
    assert read.subject == "Richiesta accesso agli atti \N{EN DASH} pratica 456/2026"
    assert read.text.startswith("Gentile Ufficio,\n")  # the page's <title> is no text
    assert "accesso agli atti della pratica n. 456/2026" in read.text
    assert "document.cookie" not in read.text and "font-family" not in read.text
    html = read.html
    assert html is not None
    for unsafe in ("<script", "document.cookie", "onclick", "onload", "<img", "tracker.example",
                   "javascript:", "<style", "<title"):
        assert unsafe not in html.lower(), unsafe
    assert ('<a href="https://www.studiolegale-esempio.it/moduli/accesso-atti-456.pdf" '
            'rel="noopener noreferrer">nostro sito</a>') in html
    assert "clicchi qui" in html


@pytest.mark.parametrize(("name", "said_last", "quote_starts"), [
    ("reply_outlook.eml", "Posso presentare la domanda allo sportello?\n\nGiulia Bianchi",
     "________________________________\nDa: Help desk <helpdesk@helpdesk.example.it>"),
    ("reply_gmail_rewritten.eml", "da\ntelefono.\n\nGiulia Bianchi",
     ("Il giorno lun 9 mar 2026 alle ore 10:12 Help desk <\nhelpdesk@helpdesk.example.it> "
      "ha scritto:")),
])
def test_a_reply_shows_what_the_citizen_wrote_now_and_folds_the_quoted_messages(
        name: str, said_last: str, quote_starts: str) -> None:
    read = content.read(load(name))
    assert read.text.startswith("Buongiorno,\n")
    assert read.text.endswith(said_last)
    assert read.quoted.startswith(quote_starts)
    assert "Gentile Giulia Bianchi," in read.quoted
    assert "Gentile" not in read.text


GMAIL_WRAPPED = ("On Mon, Mar 9, 2026 at 10:12 AM Help desk <\nhelpdesk@helpdesk.example.it> "
                 "wrote:")


@pytest.mark.parametrize(("text", "new", "quoted"), [
    ("Va bene, grazie.\n\n-----Messaggio originale-----\nDa: Help desk",
     "Va bene, grazie.", "-----Messaggio originale-----\nDa: Help desk"),
    ("Ok.\n\nIl 09/03/2026 10:12, Help desk ha scritto:\n> testo", "Ok.",
     "Il 09/03/2026 10:12, Help desk ha scritto:\n> testo"),
    (f"Thanks.\n\n{GMAIL_WRAPPED}\n\n> text", "Thanks.", f"{GMAIL_WRAPPED}\n\n> text"),
    ("> only a quote", "> only a quote", ""),  # nothing new: all of it is shown
    ("Il modulo l'ho inviato ieri.\nIl tecnico mi ha scritto:\nriprovi domani",
     "Il modulo l'ho inviato ieri.", "Il tecnico mi ha scritto:\nriprovi domani"),  # a limit
], ids=["outlook classic", "thunderbird", "gmail english", "only quoted", "citizen's words"])
def test_split_quoted_finds_where_each_clients_quote_begins(text: str, new: str,
                                                          quoted: str) -> None:
    assert content.split_quoted(text) == (new, quoted)


def test_a_forwarded_message_is_kept_whole_as_an_attachment() -> None:
    read = content.read(load("forwarded.eml"))
    assert read.text.startswith("Buongiorno,\nvi inoltro la richiesta di un cittadino")
    [forwarded] = read.attachments
    assert forwarded.filename == "Richiesta certificato di residenza.eml"
    assert forwarded.content_type == "message/rfc822"
    original = content.read(content.parse(forwarded.data))
    assert original.sender == "Luigi Conti <luigi.conti88@gmail.com>"
    assert original.subject == "Richiesta certificato di residenza"
    assert "non riesco a scaricare il certificato di\nresidenza" in original.text


def test_a_forwarded_message_with_headers_the_library_cannot_refold_is_kept_as_it_came(
) -> None:
    inner = (b"From: Ufficio :; <ufficio@example.it>\nTo: undisclosed-recipients:;"
             + b" " * 90 + b"x\nSubject: vecchia richiesta\n\ntesto originale\n")
    message = content.parse(
        b"From: a@example.it\nSubject: Fwd\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\nciao\n"
        b"--B\nContent-Type: message/rfc822\n\n" + inner + b"--B--\n")
    read = content.read(message)
    assert read.problems == []
    [forwarded] = read.attachments
    assert forwarded.data.startswith(b"From: Ufficio :; <ufficio@example.it>\n")
    assert forwarded.data.endswith(b"\n\ntesto originale")


def test_files_inside_an_s_mime_signed_message_are_kept() -> None:
    read = content.read(load("signed_smime.eml"))
    assert "si chiede l'abilitazione al portale" in read.text
    assert [(a.filename, a.content_type) for a in read.attachments] == [
        ("Elenco utenti da abilitare.pdf", "application/pdf"),
        ("smime.p7s", "application/pkcs7-signature")]
    assert read.attachments[0].data == PDF


def test_a_screenshot_pasted_in_the_text_is_kept_with_the_attached_files() -> None:
    read = content.read(load("inline_screenshot.eml"))
    assert [(a.filename, a.content_type) for a in read.attachments] == [
        ("image001.png", "image/png"), ("Modulo SUAP.pdf", "application/pdf")]
    assert read.attachments[0].data.startswith(b"\x89PNG\r\n\x1a\n")
    assert read.html is not None and "cid:" not in read.html


def test_a_request_from_a_phone_is_read_with_its_attachment() -> None:
    read = content.read(load("plain_request.eml"))
    assert read.subject == "Impossibile accedere al portale \N{EN DASH} errore SPID"
    assert "Errore 19 \N{EN DASH} autenticazione non riuscita\N{RIGHT DOUBLE QUOTATION MARK}" in (
        read.text)
    assert read.quoted == ""
    [screenshot] = read.attachments
    assert (screenshot.filename, screenshot.content_type) == ("schermata.png", "image/png")
    assert screenshot.data.startswith(b"\x89PNG")


@pytest.mark.parametrize("name", sorted(set(KINDS) - {"broken.eml"}))
def test_every_real_world_shape_is_read_without_problems(name: str) -> None:
    read = content.read(pec.unwrap(load(name)))
    assert read.problems == []
    assert read.text
    assert read.date is not None


def test_a_message_that_is_barely_one_is_read_and_its_problems_said() -> None:
    read = content.read(load("broken.eml"))
    assert read.text.startswith("Testo con accento")  # read as UTF-8 with replacements
    assert read.subject.startswith("Richiesta urgente")
    assert read.date is None
    assert [a.filename for a in read.attachments] == ["dati.bin", "foto.jpg"]
    said = "\n".join(read.problems)
    assert "x-unknown-charset" in said
    assert "dati.bin: damaged base64" in said
    assert "foto.jpg: damaged base64" in said


@pytest.mark.parametrize("raw", [b"", b"\x00\x01", b"  \r\n\r\n"], ids=["empty", "binary",
                                                                          "blank lines"])
def test_bytes_that_are_no_message_are_unreadable(raw: bytes) -> None:
    with pytest.raises(content.Unreadable):
        content.parse(raw)


def test_a_body_longer_than_the_limit_is_cut() -> None:
    message = content.parse(b"From: a@example.it\nSubject: log\n\n" + b"x" * (
        content.MAX_TEXT + 500))
    assert len(content.read(message).text) == content.MAX_TEXT


# --- PEC ---------------------------------------------------------------------------------------

def test_a_pec_envelope_unwraps_to_the_citizens_own_message() -> None:
    envelope = load("pec_envelope.eml")
    assert pec.is_envelope(envelope)
    original = pec.unwrap(envelope)
    assert original is not envelope
    assert original["From"] == "Mario Rossi <mario.rossi@pec.it>"
    assert original["Message-ID"] == "<eb6a41c2d8f3a907b5e1@webmail.pec.it>"
    read = content.read(original)
    assert read.subject == "Richiesta certificato"  # not "POSTA CERTIFICATA: ..."
    assert read.text.startswith("Spett.le Ufficio,\n\nchiedo il rilascio del certificato")
    assert [(a.filename, a.data) for a in read.attachments] == [("documento identita.pdf",
                                                                   PDF)]
    assert match(original) == threads.Match(None, "new")


@pytest.mark.parametrize("name", ["plain_request.eml", "reply_outlook.eml", "signed_smime.eml",
                                  "pec_receipt_consegna.eml", "dsn_exchange.eml"])
def test_a_message_that_is_no_pec_envelope_unwraps_to_itself(name: str) -> None:
    message = load(name)
    assert not pec.is_envelope(message)
    assert pec.unwrap(message) is message


@pytest.mark.parametrize(("name", "kind", "refers_to", "failed"), [
    ("pec_receipt_accettazione.eml", "accettazione", OUR_ID, False),
    ("pec_receipt_consegna.eml", "avvenuta-consegna", OUR_ID, False),
    ("pec_receipt_errore.eml", "errore-consegna",
     "<HD-2026-000126.5e6f7a8b9c0d@helpdesk.example.it>", True),
])
def test_a_pec_receipt_says_what_happened_to_which_of_our_messages(
        name: str, kind: str, refers_to: str, failed: bool) -> None:
    message = load(name)
    assert pec.receipt(message) == pec.Receipt(kind, refers_to, failed)
    assert threads.ours([refers_to], DOMAIN) == refers_to[1:15]
    assert not kinds.answerable(message)


def test_a_pec_receipt_keeps_its_certification_data_for_the_ticket() -> None:
    read = content.read(load("pec_receipt_consegna.eml"))
    names = [a.filename for a in read.attachments]
    assert names == ["daticert.xml", "postacert.eml", "smime.p7s"]
    assert b'tipo="avvenuta-consegna"' in read.attachments[0].data
    assert OUR_ID.encode() in read.attachments[1].data
    assert read.text.startswith("Ricevuta di avvenuta consegna")


@pytest.mark.parametrize("name", ["plain_request.eml", "pec_envelope.eml", "dsn_postfix.eml"])
def test_a_message_that_is_no_receipt_has_none(name: str) -> None:
    assert pec.receipt(load(name)) is None
