"""A local WhatsApp Cloud API (Meta Graph API) server for tests, and signed webhook helpers.

Routes (``{v}`` is any version such as ``v21.0``; every call needs
``Authorization: Bearer <access_token>``):

- ``POST /{v}/{phone_number_id}/messages``: checks the body shape of text, image, audio,
  video, document, interactive (reply buttons: at most 3, titles at most 20 characters;
  lists: at most 10 rows) and template messages, records it in :attr:`sent`, and answers
  ``{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}``.
- ``POST /{v}/{phone_number_id}/media`` (multipart: ``messaging_product``, ``type``,
  ``file``): stores the file, answers ``{"id": MEDIA_ID}``.
- ``GET /{v}/{media_id}``: the media's metadata with a download ``url`` on this server;
  ``GET /download/{media_id}``: the bytes (the token is needed here too).
  ``GET /{v}/{phone_number_id}``: the number's ``display_phone_number`` and ``verified_name``.

Errors use Graph's shape ``{"error": {"message", "type", "code", "error_subcode",
"fbtrace_id"}}``; :meth:`WhatsAppEmulator.fail_next` scripts them (e.g. a 429 with code
130429, then success). Tests post to the adapter's webhook with :func:`signed_post`::

    with WhatsAppEmulator(access_token="t", phone_number_ids=["111"]) as graph:
        body, headers = signed_post(text_payload("111", "4915550001", "hi"), "app-secret")
        httpx.post(webhook_url, content=body, headers=headers)
        ...  # config: base_url = graph.base_url
        assert graph.sent[0].body["text"]["body"] == "..."
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openpista_testing.server import ThreadedServer

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

MESSAGE_TYPES = ("text", "image", "audio", "video", "document", "interactive", "template")
TEXT_LIMIT = 4096


@dataclass(frozen=True)
class SentMessage:
    """One accepted send: from which number, the JSON body, the id it was given."""

    phone_number_id: str
    body: dict[str, Any]
    message_id: str


@dataclass(frozen=True)
class ScriptedError:
    """An error answer for the next call of ``route`` (``messages``, ``media``, ``download``
    or ``any``)."""

    status: int
    code: int
    message: str
    subcode: int | None = None
    route: str = "messages"


@dataclass
class StoredMedia:
    data: bytes
    mime_type: str
    phone_number_id: str = ""


class WhatsAppEmulator(ThreadedServer):
    """The Graph API on 127.0.0.1 in a background thread (``base_url`` is the channel's
    ``base_url`` option)."""

    name = "WhatsApp emulator"

    def __init__(
        self,
        *,
        access_token: str = "test-access-token",
        phone_number_ids: tuple[str, ...] | list[str] = ("111111",),
        templates: tuple[str, ...] | list[str] = ("hello_world",),
    ) -> None:
        super().__init__()
        self.access_token = access_token
        self.phone_number_ids = set(phone_number_ids)
        self.templates = set(templates)
        self.sent: list[SentMessage] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every call
        self.media: dict[str, StoredMedia] = {}
        self._errors: collections.deque[ScriptedError] = collections.deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    # -- scripting ------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        code: int,
        message: str = "error",
        *,
        subcode: int | None = None,
        route: str = "messages",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``route`` with a Graph error."""
        with self._lock:
            for _ in range(times):
                self._errors.append(ScriptedError(status, code, message, subcode, route))

    def add_media(self, data: bytes, mime_type: str) -> str:
        """Store a file as if a user had sent it; returns its media id."""
        media_id = f"{next(self._ids) + 900000000}"
        with self._lock:
            self.media[media_id] = StoredMedia(data, mime_type)
        return media_id

    async def wait_for_sent(self, count: int, wait: float = 30.0) -> list[SentMessage]:
        """Wait (without blocking the event loop) until at least ``count`` messages were
        sent; returns them all."""
        deadline = time.monotonic() + wait
        while len(self.sent) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.sent)} message(s) sent, expected {count}")
            await asyncio.sleep(0.01)
        return list(self.sent)

    # -- HTTP -----------------------------------------------------------------------------

    def asgi_app(self) -> Any:
        """The starlette application."""
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(
            routes=[
                Route("/download/{media_id}", self._download, methods=["GET"]),
                Route("/{version}/{number}/messages", self._messages, methods=["POST"]),
                Route("/{version}/{number}/media", self._upload, methods=["POST"]),
                Route("/{version}/{media_id}", self._media_info, methods=["GET"]),
            ]
        )

    def _check(self, request: Request, route: str) -> Response | None:
        """The auth failure or scripted error for this call, if any."""
        self.requests.append((request.method, request.url.path))
        expected = f"Bearer {self.access_token}"
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return graph_error(401, 190, "Invalid OAuth access token.", "OAuthException")
        with self._lock:
            if self._errors and self._errors[0].route in (route, "any"):
                scripted = self._errors.popleft()
                return graph_error(
                    scripted.status, scripted.code, scripted.message, subcode=scripted.subcode
                )
        return None

    def _unknown_number(self, number: str) -> Response | None:
        if number in self.phone_number_ids:
            return None
        return graph_error(
            400,
            100,
            f"Unsupported post request. Object with ID '{number}' does not exist",
            subcode=33,
        )

    async def _messages(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        refused = self._check(request, "messages")
        if refused is not None:
            return refused
        number = request.path_params["number"]
        unknown = self._unknown_number(number)
        if unknown is not None:
            return unknown
        try:
            body = json.loads(await request.body())
        except ValueError:
            return graph_error(400, 100, "Invalid JSON in the request body")
        problem = _body_problem(body, self.templates)
        if problem is not None:
            code = 132001 if problem.startswith("template name") else 100
            return graph_error(400, code, problem)
        message_id = f"wamid.EMU{next(self._ids):012d}"
        with self._lock:
            self.sent.append(SentMessage(number, body, message_id))
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": message_id}],
            }
        )

    async def _upload(self, request: Request) -> Response:
        from starlette.datastructures import UploadFile
        from starlette.responses import JSONResponse

        refused = self._check(request, "media")
        if refused is not None:
            return refused
        number = request.path_params["number"]
        unknown = self._unknown_number(number)
        if unknown is not None:
            return unknown
        async with request.form() as form:
            upload = form.get("file")
            if form.get("messaging_product") != "whatsapp" or not isinstance(upload, UploadFile):
                return graph_error(400, 100, "messaging_product=whatsapp and file are required")
            data = await upload.read()
            mime_type = str(form.get("type") or upload.content_type or "")
        media_id = f"{next(self._ids) + 800000000}"
        with self._lock:
            self.media[media_id] = StoredMedia(data, mime_type, number)
        return JSONResponse({"id": media_id})

    async def _media_info(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        refused = self._check(request, "media")
        if refused is not None:
            return refused
        media_id = request.path_params["media_id"]
        if media_id in self.phone_number_ids:  # a business phone number's own object
            return JSONResponse(
                {
                    "display_phone_number": f"+1 555-{media_id}",
                    "verified_name": "openpista test",
                    "id": media_id,
                }
            )
        stored = self.media.get(media_id)
        if stored is None:
            return graph_error(400, 100, f"Media ID '{media_id}' does not exist", subcode=33)
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "url": f"{self.base_url}/download/{media_id}",
                "mime_type": stored.mime_type,
                "sha256": hashlib.sha256(stored.data).hexdigest(),
                "file_size": len(stored.data),
                "id": media_id,
            }
        )

    async def _download(self, request: Request) -> Response:
        from starlette.responses import Response

        refused = self._check(request, "download")
        if refused is not None:
            return refused
        stored = self.media.get(request.path_params["media_id"])
        if stored is None:
            return graph_error(404, 100, "media not found")
        return Response(stored.data, media_type=stored.mime_type)


def graph_error(
    status: int, code: int, message: str, kind: str = "OAuthException", subcode: int | None = None
) -> Response:
    """A Graph API error answer."""
    from starlette.responses import JSONResponse

    error: dict[str, Any] = {
        "message": message,
        "type": kind,
        "code": code,
        "fbtrace_id": "AemulatorTrace",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return JSONResponse({"error": error}, status_code=status)


def _body_problem(body: Any, templates: set[str]) -> str | None:
    """What is wrong with a send body, as the Graph API would say it; ``None`` if valid."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if body.get("messaging_product") != "whatsapp":
        return "(#100) The parameter messaging_product is required."
    if not str(body.get("to") or "").isdigit():
        return "(#100) Invalid parameter: to must be a phone number"
    kind = body.get("type", "text")
    if kind not in MESSAGE_TYPES or not isinstance(body.get(kind), dict):
        return f"(#100) Param {kind} is missing or of an unsupported type"
    content = body[kind]
    if kind == "text":
        text = content.get("body")
        if not isinstance(text, str) or not 1 <= len(text) <= TEXT_LIMIT:
            return f"(#100) Param text['body'] must be 1 to {TEXT_LIMIT} characters"
    elif kind in ("image", "audio", "video", "document"):
        if ("id" in content) == ("link" in content):
            return f"(#100) Param {kind} needs exactly one of id and link"
    elif kind == "interactive":
        return _interactive_problem(content)
    elif kind == "template":
        name = content.get("name")
        if name not in templates:
            return f"template name ({name}) does not exist in the translation"
        if not isinstance(content.get("language"), dict):
            return "(#100) Param template['language'] is required"
    return None


def _interactive_problem(content: dict[str, Any]) -> str | None:
    body = content.get("body")
    text = body.get("text") if isinstance(body, dict) else None
    if not 1 <= len(str(text or "")) <= 1024:
        return "(#100) Param interactive['body']['text'] must be 1 to 1024 characters"
    action: Any = content.get("action") or {}
    if not isinstance(action, dict):
        return "(#100) Param interactive['action'] must be an object"
    if content.get("type") == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return "(#131009) Param interactive['action']['buttons'] must have 1 to 3 buttons"
        for button in buttons:
            reply = button.get("reply") if isinstance(button, dict) else None
            if not isinstance(reply, dict) or not reply.get("id"):
                return "(#131009) Each button needs reply.id"
            if not 1 <= len(str(reply.get("title") or "")) <= 20:
                return "(#131009) Button title length invalid. Should be 1 to 20 characters"
        return None
    if content.get("type") == "list":
        sections = action.get("sections")
        rows: list[dict[str, Any]] = [
            r
            for s in (sections if isinstance(sections, list) else [])
            if isinstance(s, dict)
            for r in s.get("rows") or []
            if isinstance(r, dict)
        ]
        if not action.get("button") or not 1 <= len(rows) <= 10:
            return "(#131009) A list needs a button label and 1 to 10 rows"
        if any(not 1 <= len(str(r.get("title") or "")) <= 24 for r in rows):
            return "(#131009) Row title length invalid. Should be 1 to 24 characters"
        return None
    return f"(#100) Unsupported interactive type {content.get('type')!r}"


# -- webhook payloads ----------------------------------------------------------------------


def signed_post(payload: Any, app_secret: str) -> tuple[bytes, dict[str, str]]:
    """``(body, headers)`` of a webhook POST as Meta sends it, signed with ``app_secret``."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


_wamids = itertools.count(1)


def webhook_payload(
    phone_number_id: str,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    name: str = "Test User",
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``whatsapp_business_account`` webhook body carrying ``messages``, ``statuses`` and
    system-level ``errors`` (see :func:`system_error`)."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
    }
    if messages:
        value["contacts"] = [
            {"profile": {"name": name}, "wa_id": m["from"]} for m in messages if "from" in m
        ]
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    if errors:
        value["errors"] = list(errors)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA_ID", "changes": [{"value": value, "field": "messages"}]}],
    }


def system_error(code: int, title: str, details: str) -> dict[str, Any]:
    """One entry of a change's ``value.errors``: a problem Meta reports about the business
    number itself, not about one message (e.g. 131056, a pair rate limit)."""
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }


def message(
    sender: str,
    kind: str,
    content: Any,
    *,
    message_id: str | None = None,
    timestamp: float | None = None,
) -> dict[str, Any]:
    """One entry of ``messages``: ``content`` is the object under ``kind``."""
    return {
        "from": sender,
        "id": message_id or f"wamid.IN{next(_wamids):012d}",
        "timestamp": str(int(time.time() if timestamp is None else timestamp)),
        "type": kind,
        kind: content,
    }


def text_payload(phone_number_id: str, sender: str, text: str, **options: Any) -> dict[str, Any]:
    """A webhook body with one text message (options as in :func:`message`)."""
    return webhook_payload(phone_number_id, [message(sender, "text", {"body": text}, **options)])
