"""The WhatsApp Cloud API (Meta Graph API) over httpx: send, upload and download media.

Every call carries ``Authorization: Bearer <access token>``; the token never appears in a
log line or an exception. Sends are paced (:class:`~openpista_whatsapp.pacing.Pacer`);
rate-limit answers (HTTP 429, Graph codes 4, 80007, 130429, 131048, 131056), server errors
(5xx) and transport errors are retried with exponential backoff and jitter (tenacity);
everything else (a bad number, a missing template, a wrong token) is a permanent
:class:`GraphError` at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from openpista_whatsapp.pacing import Pacer

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from openpista_whatsapp.settings import WhatsAppSettings

log = logging.getLogger(__name__)

RATE_LIMIT_CODES = frozenset({4, 80007, 130429, 131048, 131056})
_SCRUB = "<redacted>"


class GraphError(Exception):
    """A Graph API call failed; ``retryable`` tells a transient failure from a permanent one.

    ``code``/``subcode`` are Meta's error codes (0 when the answer had none); the message
    never contains the access token.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: int = 0,
        subcode: int = 0,
        fbtrace_id: str = "",
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id
        self.retryable = retryable

    @classmethod
    def from_response(cls, response: httpx.Response) -> GraphError:
        """Read Meta's error body ``{"error": {"message", "type", "code", ...}}``."""
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        if not isinstance(error, dict):
            error = {}
        code = _int(error.get("code"))
        text = str(error.get("message") or response.reason_phrase or "no error message")
        details = error.get("error_data", {})
        if isinstance(details, dict) and details.get("details"):
            text += f" ({details['details']})"
        retryable = (
            response.status_code == 429 or response.status_code >= 500 or code in RATE_LIMIT_CODES
        )
        return cls(
            f"HTTP {response.status_code}, Graph error {code}: {text[:500]}",
            status=response.status_code,
            code=code,
            subcode=_int(error.get("error_subcode")),
            fbtrace_id=str(error.get("fbtrace_id") or ""),
            retryable=retryable,
        )


class GraphClient:
    """Talks to ``{base_url}/{graph_api_version}`` with the configured access token."""

    def __init__(self, config: WhatsAppSettings, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self._token = config.secret("access_token")
        rates = {n.phone_number_id: n.messages_per_second for n in config.numbers}
        self.pacer = Pacer(
            lambda number: rates.get(number) or config.messages_per_second,
            config.recipient_interval,
        )
        self._http = httpx.AsyncClient(
            base_url=f"{config.base_url}/{config.graph_api_version}",
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=config.request_timeout,
            transport=transport,
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def send(self, phone_number_id: str, message: dict[str, Any]) -> str:
        """Send ``message`` (a body from :mod:`openpista_whatsapp.messages`) from
        ``phone_number_id``; returns the new message id (``wamid...``)."""
        await self.pacer.wait(phone_number_id, str(message.get("to", "")))
        answer = await self._call("POST", f"/{phone_number_id}/messages", json=message)
        try:
            return str(answer["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise GraphError("the send answer has no message id") from None

    async def upload_media(
        self, phone_number_id: str, data: bytes, mime_type: str, filename: str
    ) -> str:
        """Upload a file for sending from ``phone_number_id``; returns its media id."""
        answer = await self._call(
            "POST",
            f"/{phone_number_id}/media",
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, data, mime_type)},
        )
        media_id = answer.get("id")
        if not isinstance(media_id, str):
            raise GraphError("the upload answer has no media id")
        return media_id

    async def media_info(self, media_id: str) -> dict[str, Any]:
        """``{"url", "mime_type", "file_size", ...}`` of an incoming media object."""
        answer = await self._call("GET", f"/{media_id}")
        if not isinstance(answer.get("url"), str):
            raise GraphError(f"media {media_id} has no download URL")
        return answer

    async def download(self, url: str, limit: int) -> bytes:
        """The bytes at a media ``url`` (needs the token); :class:`GraphError` past ``limit``."""

        async def fetch() -> bytes:
            async with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise GraphError.from_response(response)
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise GraphError(f"the media file is larger than {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)

        result: bytes = await self._retrying(fetch)
        return result

    async def _call(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            response = await self._http.request(method, path, **options)
            if response.status_code >= 400:
                raise GraphError.from_response(response)
            try:
                answer = response.json()
            except ValueError:
                raise GraphError(f"{method} {path}: the answer is not JSON") from None
            if not isinstance(answer, dict):
                raise GraphError(f"{method} {path}: the answer is not a JSON object")
            return answer

        result: dict[str, Any] = await self._retrying(once)
        return result

    async def _retrying(self, call: Any) -> Any:
        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=wait_random_exponential(
                multiplier=self.config.retry_base_delay, max=self.config.retry_max_delay
            ),
            before_sleep=_report_retry,
            reraise=True,
        )
        try:
            return await retrying(call)
        except httpx.HTTPError as exc:
            raise GraphError(
                self._scrub(f"cannot reach the Graph API: {exc}"), retryable=True
            ) from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, _SCRUB) if self._token else text


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, GraphError):
        return exc.retryable
    return isinstance(exc, httpx.TransportError)


def _report_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    reason = str(error) if isinstance(error, GraphError) else type(error).__name__
    log.warning(
        "whatsapp: Graph API call failed (%s); retry %d in %.1f s",
        reason,
        state.attempt_number,
        delay,
    )


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
