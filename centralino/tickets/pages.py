"""The citizens' pages: the web form that opens a ticket, and each ticket's private status page.

    GET  /richieste                   the form
    POST /richieste                   send it: 303 to the status page, or the form again with
                                      what to fix next to each field (nothing is lost)
    GET  /richieste/stato/{token}     the ticket's public thread (the token is the secret)
    POST /richieste/stato/{token}     the citizen writes: 303 back to the page

Plain HTML in Italian, no script and nothing from elsewhere (it works with JavaScript off, and
the Content-Security-Policy allows only this server's stylesheet). Against abuse: a size limit
on what is sent, a limit per address and hour, a field people do not see (a bot fills it in),
and a signed anti-forgery token, also in a SameSite cookie, that another site cannot have.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from urllib.parse import parse_qsl, unquote

from aiohttp import BodyPartReader, web

from centralino.storage.models import Ticket
from centralino.storage.store import Attachment
from centralino.tickets.desk import Busy, TicketDesk
from centralino.tickets.files import Files, Incoming, TooLarge
from centralino.tickets.http import (
    STATUS_WRITES,
    attachment_path,
    download,
    status_path,
)
from centralino.web.common import CLOCK, MAIL, RUNNING, SETTINGS, TICKETS, error, read_body
from cti.recalls import SlidingWindow
from ivr.clock import LOCAL
from tickets.attachments import Limits, Refused, clean_name
from tickets.requests import MAX_BODY, InvalidRequest, check

log = logging.getLogger(__name__)

FORM = "/richieste"
FORM_LIMIT = 32 * 1024  # bytes of a sent form (5,000 characters of text fit in it many times)
HONEYPOT = "sito_web"  # hidden from people; a bot that fills in every field fills this too
CSRF_COOKIE = "centralino_modulo"
FORM_SECRET = web.AppKey("ticket_form_secret", bytes)
FORM_SENDS = web.AppKey("ticket_form_sends", SlidingWindow)
UPLOAD_TIMEOUT = 120.0  # seconds for a whole form with its files (20 MB on a slow line)
ACCEPT = (".pdf,.png,.jpg,.jpeg,.txt,.odt,.ods,.odp,.docx,.xlsx,.pptx,application/pdf,"
          "image/png,image/jpeg,text/plain")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the status page's address is the citizen's secret
    "Cache-Control": "no-store",
}
STATES = {  # what the citizen reads for each state
    "nuovo": "ricevuta, in attesa di essere presa in carico",
    "preso in carico": "presa in carico da un operatore",
    "in attesa del cittadino": "in attesa di una tua risposta",
    "escalato": "passata agli uffici competenti (II livello)",
    "risolto": "risolta",
    "chiuso": "chiusa",
}
FIELD_LABELS = {"allegati": "Allegati", "subject": "Argomento e oggetto",
                "body": "Descrizione della richiesta",
                "name": "Nome e cognome", "email": "Indirizzo e-mail", "phone": "Telefono",
                "tax_code": "Codice fiscale", "consent": "Informativa sulla privacy",
                "topic": "Argomento e oggetto"}
FIELD_ERRORS = {  # one message per field, in plain Italian (the API gives the details)
    "topic": "Scegli l'argomento e l'oggetto della richiesta dall'elenco.",
    "subject": "Scegli l'argomento e l'oggetto della richiesta dall'elenco.",
    "body": f"Descrivi la richiesta (al massimo {MAX_BODY} caratteri).",
    "name": "Scrivi il tuo nome e cognome.",
    "email": "Scrivi un indirizzo e-mail valido (per esempio nome@esempio.it), oppure un "
             "numero di telefono.",
    "phone": "Scrivi un numero di telefono valido (per esempio 06 1234 5678 o 347 123 4567).",
    "tax_code": "Il codice fiscale non è valido: controlla i caratteri (l'ultimo è di "
                "controllo).",
    "consent": "Per inviare la richiesta devi dichiarare di aver letto l'informativa.",
}
MONTHS = ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto",
          "settembre", "ottobre", "novembre", "dicembre")


def add_routes(app: web.Application) -> None:
    settings = app[SETTINGS].tickets
    # In memory: a restart makes the forms shown before it ask to be sent again (kept filled in)
    app[FORM_SECRET] = secrets.token_bytes(32)
    app[FORM_SENDS] = SlidingWindow(settings.per_address_per_hour, 3600)
    app.router.add_get(FORM, show_form)
    app.router.add_post(FORM, send_form)
    app.router.add_get(FORM + "/stile.css", stylesheet)
    app.router.add_get(FORM + "/stato/{token}", show_status)
    app.router.add_post(FORM + "/stato/{token}", citizen_writes)
    app.router.add_get(FORM + "/stato/{token}/allegati/{id:[0-9]{1,12}}", get_attachment)


# --- anti-forgery -----------------------------------------------------------------------------

def _sign(secret: bytes, issued: int, nonce: str) -> str:
    mac = hmac.new(secret, f"{issued}.{nonce}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{issued}.{nonce}.{mac}"


def _new_token(request: web.Request) -> tuple[str, str]:
    """(the form's hidden field, the cookie's nonce): the cookie's if the browser has one."""
    nonce = request.cookies.get(CSRF_COOKIE, "")
    if not (16 <= len(nonce) <= 64 and nonce.isalnum()):
        nonce = secrets.token_hex(16)
    return _sign(request.app[FORM_SECRET], int(time.time()), nonce), nonce


def _forged(request: web.Request, sent: str) -> str | None:
    """Why the anti-forgery token does not hold, or None if it does."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin.split("://", 1)[-1] != request.host:
        return "sent from another site"
    try:
        issued_text, nonce, _ = sent.split(".")
        issued = int(issued_text)
    except ValueError:
        return "no valid form token"
    if not hmac.compare_digest(_sign(request.app[FORM_SECRET], issued, nonce), sent):
        return "the form token does not match (a restart since the form was shown?)"
    if not hmac.compare_digest(request.cookies.get(CSRF_COOKIE, ""), nonce):
        return "the form token's cookie is missing (cookies off, or another site)"
    if time.time() - issued > request.app[SETTINGS].tickets.form_max_age:
        return "the form was shown too long ago"
    return None


# --- rendering --------------------------------------------------------------------------------

def _page(request: web.Request, title: str, body: str, status: int = 200,
          cookie: str | None = None) -> web.Response:
    html = (f'<!DOCTYPE html>\n<html lang="it"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)} · Help desk</title>'
            f'<link rel="stylesheet" href="{FORM}/stile.css"></head><body>'
            f'<a class="salta" href="#contenuto">Vai al contenuto</a>'
            f'<header><p class="ente">Help desk</p></header>'
            f'<main id="contenuto" tabindex="-1"><h1>{escape(title)}</h1>{body}</main>'
            f'</body></html>')
    response = web.Response(text=html, content_type="text/html", charset="utf-8",
                            status=status, headers=HEADERS)
    if cookie is not None:
        response.set_cookie(CSRF_COOKIE, cookie, path=FORM, httponly=True, samesite="Strict",
                            secure=request.secure)
    return response


def _when(at: datetime) -> str:
    local = at.astimezone(LOCAL)
    return f"{local.day} {MONTHS[local.month - 1]} {local.year}, {local:%H:%M}"


@dataclass
class _Form:
    values: dict[str, str]
    problems: dict[str, str]  # field -> message
    notice: str = ""  # a problem with the whole form (its token)


def _form_html(request: web.Request, desk: TicketDesk, form: _Form, token: str) -> str:
    v, problems = form.values, form.problems
    queues = request.app[RUNNING].config.call.queues
    out: list[str] = []
    if problems or form.notice:
        items = "".join(f'<li><a href="#{_field_id(f)}">{escape(FIELD_LABELS[f])}: '
                        f'{escape(m)}</a></li>' for f, m in problems.items())
        notice = f"<p>{escape(form.notice)}</p>" if form.notice else ""
        out.append(f'<div class="errori" role="alert" aria-labelledby="titolo-errori" '
                   f'tabindex="-1"><h2 id="titolo-errori">La richiesta non è stata inviata'
                   f'</h2>{notice}<ul>{items}</ul></div>')
    out.append('<p>I campi contrassegnati con <span aria-hidden="true">*</span>'
               '<span class="sr">asterisco</span> sono obbligatori. Indica almeno un '
               'recapito: e-mail o telefono.</p>')
    out.append(f'<form method="post" action="{FORM}" enctype="multipart/form-data" '
               f'novalidate><input type="hidden" name="csrf" value="{escape(token)}">')
    # Topic and subject in one list, grouped by topic: no script needed to narrow it down.
    chosen = f"{v.get('topic', '')}|{v.get('subject', '')}"
    groups = []
    for topic, desk_topic in desk.config.topics.items():
        label = queues[topic].name if topic in queues else topic
        options = "".join(
            f'<option value="{escape(topic)}|{escape(s)}"'
            f'{" selected" if chosen == f"{topic}|{s}" else ""}>{escape(s)}</option>'
            for s in desk_topic.subjects)
        groups.append(f'<optgroup label="{escape(label)}">{options}</optgroup>')
    out.append(_field(problems, "subject", "select", required=True, control=(
        f'<select id="campo-subject" name="argomento" required{_invalid(problems, "subject")}>'
        f'<option value="">Scegli…</option>{"".join(groups)}</select>')))
    body = escape(v.get("body", ""))
    out.append(_field(problems, "body", "textarea", required=True, control=(
        f'<textarea id="campo-body" name="body" rows="8" maxlength="{MAX_BODY}" required'
        f'{_invalid(problems, "body")}>{body}</textarea>'),
        hint="Spiega il problema o la domanda: più dettagli ci dai, più rapida la risposta."))
    out.append(_field(problems, "name", "input", required=True, control=_input(
        problems, "name", v, "text", 'autocomplete="name" maxlength="128" required')))
    out.append(_field(problems, "email", "input", control=_input(
        problems, "email", v, "email", 'autocomplete="email" maxlength="254"'),
        hint="Ti scriveremo qui le risposte."))
    out.append(_field(problems, "phone", "input", control=_input(
        problems, "phone", v, "tel", 'autocomplete="tel" maxlength="32"')))
    out.append(_field(problems, "tax_code", "input", control=_input(
        problems, "tax_code", v, "text", 'autocomplete="off" maxlength="16" '
        'spellcheck="false"'), hint="Facoltativo: aiuta a trovare le tue pratiche."))
    limits = Limits()
    out.append(_field(problems, "allegati", "input", control=(
        f'<input id="campo-allegati" name="allegati" type="file" multiple '
        f'accept="{ACCEPT}"{_invalid(problems, "allegati")}>'),
        hint=f"Facoltativi: fino a {limits.files} file (PDF, immagini, documenti, testo), "
             f"{limits.file_bytes // (1024 * 1024)} MB ciascuno, "
             f"{limits.total_bytes // (1024 * 1024)} MB in tutto."))
    # The field a bot fills in: off screen, out of the tab order, hidden to screen readers.
    out.append(f'<div class="nascosto" aria-hidden="true"><label for="campo-{HONEYPOT}">'
               f'Lascia vuoto questo campo</label><input id="campo-{HONEYPOT}" '
               f'name="{HONEYPOT}" type="text" tabindex="-1" autocomplete="off"></div>')
    checked = " checked" if v.get("consent") else ""
    consent_error = _error_line(problems, "consent")
    out.append(f'<fieldset class="campo{" con-errore" if "consent" in problems else ""}">'
               f'<legend>Informativa sulla privacy <span aria-hidden="true">*</span></legend>'
               f'{consent_error}<input id="campo-consent" type="checkbox" name="consent" '
               f'value="si" required{checked}{_invalid(problems, "consent")}'
               f'{_described(problems, "consent")}> <label for="campo-consent">Ho letto '
               f"l'informativa sul trattamento dei dati personali e acconsento al "
               f"trattamento per la gestione della richiesta.</label></fieldset>")
    out.append('<button type="submit">Invia la richiesta</button></form>')
    return "".join(out)


def _field_id(field: str) -> str:
    return "campo-subject" if field == "topic" else f"campo-{field}"


def _invalid(problems: dict[str, str], field: str) -> str:
    return ' aria-invalid="true"' if field in problems else ""


def _described(problems: dict[str, str], field: str, hint: bool = False) -> str:
    ids = ([f"aiuto-{field}"] if hint else []) + ([f"errore-{field}"] if field in problems
                                                  else [])
    return f' aria-describedby="{" ".join(ids)}"' if ids else ""


def _error_line(problems: dict[str, str], field: str) -> str:
    if field not in problems:
        return ""
    return (f'<p class="errore" id="errore-{field}"><span class="sr">Errore: </span>'
            f'{escape(problems[field])}</p>')


def _input(problems: dict[str, str], field: str, values: dict[str, str], kind: str,
           extra: str) -> str:
    return (f'<input id="campo-{field}" name="{field}" type="{kind}" '
            f'value="{escape(values.get(field, ""))}" {extra}{_invalid(problems, field)}>')


def _field(problems: dict[str, str], field: str, kind: str, control: str,
           required: bool = False, hint: str = "") -> str:
    mark = ' <span aria-hidden="true">*</span>' if required else ""
    hint_html = f'<p class="aiuto" id="aiuto-{field}">{escape(hint)}</p>' if hint else ""
    described = _described(problems, field, bool(hint))
    # aria-describedby goes on the control: put it right after the control's id
    control = control.replace(f'id="campo-{field}"', f'id="campo-{field}"{described}', 1)
    return (f'<div class="campo{" con-errore" if field in problems else ""}">'
            f'<label for="campo-{field}">{escape(FIELD_LABELS[field])}{mark}</label>'
            f'{hint_html}{_error_line(problems, field)}{control}</div>')


# --- handlers ---------------------------------------------------------------------------------

def _desk(request: web.Request) -> TicketDesk:
    desk = request.app[TICKETS]
    if not desk.enabled:
        raise web.HTTPNotFound(text="Questo servizio non riceve richieste scritte.")
    return desk


async def show_form(request: web.Request) -> web.Response:
    desk = _desk(request)
    token, nonce = _new_token(request)
    return _page(request, "Invia una richiesta", _form_html(request, desk, _Form({}, {}), token),
                 cookie=nonce)


Received = list[tuple[Incoming, Attachment]]


@dataclass
class _Sent:
    """A sent form: its fields, the files received whole and accepted, and why others were
    not."""

    fields: dict[str, str]
    files: Received = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def discard(self) -> None:
        Files.discard([incoming for incoming, _ in self.files])


async def _sent(request: web.Request) -> _Sent:
    if request.content_type == "multipart/form-data":
        return await _multipart(request)
    return _Sent(await _fields(request))


async def _multipart(request: web.Request) -> _Sent:
    """A form with files: text fields within FORM_LIMIT, files within the attachments'
    limits (one too large or of a refused kind is left out and said why; beyond the total
    the request is cut with a 413), everything within UPLOAD_TIMEOUT."""
    limits = Limits()
    cap = limits.total_bytes + FORM_LIMIT
    if request.content_length is not None and request.content_length > cap:
        raise _too_large(cap, request.content_length)
    sent = _Sent({})
    files = request.app[TICKETS].files
    text = total = parts = 0
    try:
        async with asyncio.timeout(UPLOAD_TIMEOUT):
            async for part in await request.multipart():
                parts += 1
                if parts > 50 or not isinstance(part, BodyPartReader):
                    raise error(web.HTTPBadRequest, "too many parts, or nested ones")
                if part.filename is None:  # a text field
                    value = await part.read_chunk(FORM_LIMIT + 1)
                    text += len(value)
                    if text > FORM_LIMIT or await part.read_chunk():
                        raise _too_large(FORM_LIMIT, text + 1)
                    sent.fields[part.name or ""] = value.decode("utf-8")
                    continue
                if part.name != "allegati" or not part.filename:  # no file chosen
                    total += await _drain(part)
                    continue
                if len(sent.files) >= limits.files:
                    sent.refused.append(f"{clean_name(part.filename)}: al massimo "
                                        f"{limits.files} allegati")
                    total += await _drain(part)
                    continue
                # Browsers write `"` and line breaks in a file name as %22, %0D, %0A.
                incoming = files.receive(unquote(part.filename), limits.file_bytes)
                try:
                    while chunk := await part.read_chunk(64 * 1024):
                        total += len(chunk)
                        if total > limits.total_bytes:
                            raise _too_large(limits.total_bytes, total)
                        await incoming.write(chunk)
                    sent.files.append((incoming, incoming.finish()))
                except (TooLarge, Refused) as exc:
                    incoming.discard()
                    sent.refused.append(str(exc))
                    total += await _drain(part)
                except BaseException:
                    incoming.discard()
                    raise
                if total > cap:
                    raise _too_large(cap, total)
    except TimeoutError:
        sent.discard()
        raise error(web.HTTPRequestTimeout, "the form did not arrive in time") from None
    except UnicodeDecodeError:
        sent.discard()
        raise error(web.HTTPBadRequest, "the form is not valid UTF-8") from None
    except BaseException:
        sent.discard()
        raise
    return sent


def _too_large(limit: int, size: int) -> web.HTTPException:
    return error(web.HTTPRequestEntityTooLarge, f"the form and its files are larger than "
                 f"{limit} bytes", max_size=limit, actual_size=size)


async def _drain(part: BodyPartReader) -> int:
    size = 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
    return size


async def _fields(request: web.Request) -> dict[str, str]:
    """The sent form's fields (the last of a repeated name; at most a few dozen)."""
    raw = await read_body(request, FORM_LIMIT)
    if not request.content_type == "application/x-www-form-urlencoded":
        raise error(web.HTTPUnsupportedMediaType, "send the form as "
                    "application/x-www-form-urlencoded or multipart/form-data")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=40,
                          errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise error(web.HTTPBadRequest, "the form is not valid UTF-8 form data") from None
    return dict(pairs)


async def send_form(request: web.Request) -> web.Response:
    desk = _desk(request)
    address = request.remote or "unknown"
    if (wait := request.app[FORM_SENDS].hit(address, request.app[CLOCK].now())) is not None:
        return _page(request, "Troppe richieste", f"<p>Da questo indirizzo sono arrivate troppe "
                     f"richieste nell'ultima ora. Riprova tra {max(1, wait // 60)} minuti.</p>",
                     status=429)
    sent = await _sent(request)
    try:
        return await _open(request, desk, sent, address)
    finally:
        sent.discard()  # the files not kept (a wrong form): kept ones were moved already


async def _open(request: web.Request, desk: TicketDesk, sent: _Sent, address: str
                ) -> web.Response:
    fields = sent.fields
    values = {k: fields.get(k, "") for k in ("body", "name", "email", "phone", "tax_code",
                                             "consent")}
    topic, _, subject = fields.get("argomento", "").partition("|")
    values |= {"topic": topic, "subject": subject}
    token, nonce = _new_token(request)

    def again(problems: dict[str, str], notice: str = "", status: int = 422) -> web.Response:
        return _page(request, "Invia una richiesta", _form_html(
            request, desk, _Form(values, problems, notice), token), status=status, cookie=nonce)

    if why := _forged(request, fields.get("csrf", "")):
        log.info("web form from %s refused: %s", address, why)
        return again({}, "Il modulo è scaduto o non è stato inviato da questa pagina: "
                         "controlla i dati e invialo di nuovo.", status=403)
    if fields.get(HONEYPOT):
        log.info("web form from %s refused: the hidden field was filled in", address)
        return again({}, "La richiesta non è stata accettata.", status=422)
    problems: dict[str, str] = {}
    try:
        ask = check(values, desk.config, request.app[SETTINGS].recalls.default_region)
    except InvalidRequest as exc:
        for p in exc.problems:
            problems.setdefault("subject" if p.field == "topic" else p.field,
                                FIELD_ERRORS[p.field])
        ask = None
    if values["consent"] != "si":
        problems["consent"] = FIELD_ERRORS["consent"]
    if sent.refused:
        problems["allegati"] = "; ".join(sent.refused) + "."
    if ask is None or problems:
        if sent.files and "allegati" not in problems:
            problems["allegati"] = "Allega di nuovo i file: per sicurezza non sono stati tenuti."
        return again(problems)
    await desk.files.keep(sent.files)
    row, secret = await desk.open(ask, "web", attachments=tuple(a for _, a in sent.files))
    sent.files.clear()
    if (mail := request.app[MAIL]) is not None and row.requester_email:
        await mail.confirm(row, status_path(secret))  # the number and the link, by e-mail
    log.info("ticket %s opened from the web form", row.number)
    raise web.HTTPSeeOther(f"{status_path(secret)}?nuova=1", headers=HEADERS)


async def _by_token(request: web.Request, desk: TicketDesk) -> Ticket:
    token = request.match_info["token"]
    row = await desk.by_token(token)
    if row is None:
        raise web.HTTPNotFound(text="Nessuna richiesta corrisponde a questo indirizzo.",
                               headers=HEADERS)
    return row


async def _status_html(request: web.Request, desk: TicketDesk, row: Ticket, token: str,
                       problem: str = "", draft: str = "", continues: str = "") -> str:
    """The status page's body: the ticket, its public thread with its files, the form."""
    messages = await desk.store.ticket_messages(row.id, public_only=True)
    files = await desk.store.ticket_attachments(row.id, public_only=True)
    out: list[str] = []
    if request.query.get("nuova"):
        out.append(f'<div class="conferma" role="status"><h2>Richiesta registrata</h2>'
                   f'<p>Il numero della tua richiesta è <strong>{escape(row.number)}'
                   f'</strong>: citalo se ci contatti.</p><p>Conserva l\'indirizzo di questa '
                   f'pagina: è personale e ti permette di seguire la richiesta e di '
                   f'scriverci.</p></div>')
    if continues:
        out.append(f'<p role="status">La richiesta {escape(continues)} era chiusa da tempo: '
                   f'il tuo messaggio ha aperto questa nuova richiesta.</p>')
    queues = request.app[RUNNING].config.call.queues
    topic = queues[row.topic].name if row.topic in queues else row.topic
    out.append(f'<dl class="riepilogo"><dt>Numero</dt><dd>{escape(row.number)}</dd>'
               f'<dt>Argomento</dt><dd>{escape(topic)}: {escape(row.subject)}</dd>'
               f'<dt>Stato</dt><dd>{escape(STATES.get(row.state, row.state))}</dd>'
               f'<dt>Inviata il</dt><dd>{_when(row.created_at)}</dd></dl>')
    out.append('<h2>Messaggi</h2><ol class="messaggi">')
    for m in messages:
        who = "Tu" if m.direction == "in" else "Help desk"
        attached = "".join(
            f'<li><a href="{attachment_path(request.match_info["token"], a.id)}" download>'
            f'{escape(a.filename)}</a> ({_size(a.size)})</li>'
            for a in files if a.message_id == m.id)
        listed = (f'<ul class="allegati" aria-label="Allegati">{attached}</ul>'
                  if attached else "")
        out.append(f'<li class="{"in" if m.direction == "in" else "out"}"><p class="chi">'
                   f'{who}, {_when(m.at)}</p><div class="testo">{escape(m.body)}</div>'
                   f'{listed}</li>')
    out.append("</ol>")
    problems = {"body": problem} if problem else {}
    if problem:
        out.append(f'<div class="errori" role="alert"><p>{escape(problem)}</p></div>')
    out.append(f'<h2>Scrivi all\'help desk</h2><form method="post" '
               f'action="{status_path(request.match_info["token"])}" novalidate>'
               f'<input type="hidden" name="csrf" value="{escape(token)}">')
    out.append(_field(problems, "body", "textarea", required=True, control=(
        f'<textarea id="campo-body" name="body" rows="5" maxlength="{MAX_BODY}" required'
        f'{_invalid(problems, "body")}>{escape(draft)}</textarea>')).replace(
        FIELD_LABELS["body"], "Messaggio"))
    out.append('<button type="submit">Invia il messaggio</button></form>')
    return "".join(out)


async def show_status(request: web.Request) -> web.Response:
    desk = _desk(request)
    row = await _by_token(request, desk)
    token, nonce = _new_token(request)
    return _page(request, f"Richiesta {row.number}", await _status_html(
        request, desk, row, token, continues=request.query.get("segue", "")[:32]),
        cookie=nonce)


async def get_attachment(request: web.Request) -> web.StreamResponse:
    """A file of the citizen's ticket, from a public message."""
    desk = _desk(request)
    row = await _by_token(request, desk)
    found = await desk.attachment(row, int(request.match_info["id"]), public_only=True)
    if found is None:
        raise web.HTTPNotFound(text="Allegato non trovato.", headers=HEADERS)
    return download(*found)


def _size(size: int) -> str:
    return f"{size / 1024:.0f} kB" if size < 1024 * 1024 else f"{size / 1048576:.1f} MB"


async def citizen_writes(request: web.Request) -> web.Response:
    desk = _desk(request)
    row = await _by_token(request, desk)
    address = request.remote or "unknown"
    if (wait := request.app[STATUS_WRITES].hit(address, request.app[CLOCK].now())) is not None:
        return _page(request, "Troppi messaggi", f"<p>Da questo indirizzo sono arrivati troppi "
                     f"messaggi nell'ultima ora. Riprova tra {max(1, wait // 60)} minuti.</p>",
                     status=429)
    fields = await _fields(request)
    text = fields.get("body", "").strip()
    token, nonce = _new_token(request)
    problem = ""
    if why := _forged(request, fields.get("csrf", "")):
        log.info("status page message from %s refused: %s", address, why)
        problem = "Il modulo è scaduto: controlla il messaggio e invialo di nuovo."
    elif not text or len(text) > MAX_BODY:
        problem = f"Scrivi il messaggio (al massimo {MAX_BODY} caratteri)."
    elif any(ord(c) < 32 and c not in "\r\n\t" for c in text):
        problem = "Il messaggio contiene caratteri non ammessi."
    if problem:
        return _page(request, f"Richiesta {row.number}", await _status_html(
            request, desk, row, token, problem, fields.get("body", "")[:MAX_BODY]),
            status=403 if "scaduto" in problem else 422, cookie=nonce)
    text = text.replace("\r\n", "\n")
    try:
        after = await desk.citizen_wrote(row, text)
    except Busy:  # an operator's step at the same instant: once more on the fresh ticket
        after = await desk.citizen_wrote(await _by_token(request, desk), text)
    where = status_path(request.match_info["token"])
    if after.id != row.id:
        # closed long ago: a new ticket carries the message on; the citizen keeps the old link
        where += f"?segue={row.number}"
        log.info("ticket %s: a late message opened %s", row.number, after.number)
    raise web.HTTPSeeOther(where, headers=HEADERS)


async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(text=CSS, content_type="text/css", headers={
        "Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})


# Contrast: every text colour on its background is at least 4.5:1 (WCAG 1.4.3).
CSS = """
:root { font-family: system-ui, sans-serif; font-size: 112%; line-height: 1.5; color: #1a1a1a;
  background: #fff; }
body { max-width: 44rem; margin: 0 auto; padding: 0 1rem 3rem; }
.salta { position: absolute; left: -10000px; }
.salta:focus { position: static; }
header .ente { font-weight: bold; color: #06427a; border-bottom: 3px solid #06427a;
  padding: .5rem 0; }
a { color: #06427a; }
:focus-visible { outline: 3px solid #b35900; outline-offset: 2px; }
.campo { margin: 1.2rem 0; border: 0; padding: 0; }
label, legend { display: block; font-weight: bold; }
fieldset.campo label { display: inline; font-weight: normal; }
input[type=text], input[type=email], input[type=tel], select, textarea { display: block;
  width: 100%; box-sizing: border-box; font: inherit; padding: .4rem; border: 2px solid #555;
  border-radius: 3px; background: #fff; color: #1a1a1a; }
.con-errore input, .con-errore select, .con-errore textarea { border-color: #b00020; }
.aiuto { margin: .2rem 0; color: #444; }
.errore { margin: .2rem 0; color: #b00020; font-weight: bold; }
.errori { border: 3px solid #b00020; padding: .5rem 1rem; margin: 1rem 0; }
.errori a { color: #b00020; }
.conferma { border: 3px solid #1b5e20; padding: .5rem 1rem; margin: 1rem 0; }
button { font: inherit; padding: .6rem 1.2rem; background: #06427a; color: #fff; border: 0;
  border-radius: 3px; cursor: pointer; }
.nascosto { position: absolute; left: -10000px; width: 1px; height: 1px; overflow: hidden; }
.sr { position: absolute; left: -10000px; width: 1px; height: 1px; overflow: hidden; }
dl.riepilogo { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.riepilogo dt { font-weight: bold; }
dl.riepilogo dd { margin: 0; }
ol.messaggi { list-style: none; padding: 0; }
ol.messaggi li { border-left: 4px solid #06427a; padding: .3rem .8rem; margin: .8rem 0; }
ol.messaggi li.in { border-color: #555; }
.chi { margin: 0; font-size: 90%; color: #444; }
.testo { white-space: pre-wrap; overflow-wrap: anywhere; }
"""
