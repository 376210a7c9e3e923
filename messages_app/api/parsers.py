import io
from decimal import Decimal

import simplejson
from django.http import QueryDict, UnreadablePostError
from django.utils.datastructures import MultiValueDict
from rest_framework import request as drf_request
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


class JSONNumber(Decimal):
    """An exact decimal that remembers the text it was written as, so ``1e400``
    goes back out as ``1e400``, not ``1E+400`` (simplejson writes a Decimal with
    ``str``)."""

    def __new__(cls, text: str):
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __str__(self) -> str:
        return self.text


def _parse_int(text: str):
    # -0 is the one JSON integer that int() would not give back as written, and
    # int() refuses text of more than 4,300 digits (sys.get_int_max_str_digits()):
    # both stay exact decimals. Being no int, they are refused where a count or
    # an id is read, and kept as written in a payload.
    if text == "-0":
        return JSONNumber(text)
    try:
        return int(text)
    except ValueError:
        return JSONNumber(text)


class IncompleteBody(ParseError):
    default_code = "incomplete_body"


def read_body(request) -> None:
    """Read the request's whole body before any parser or view sees it.

    Over ``MQ_MAX_REQUEST_BYTES`` it is a 413 (Django's ``RequestDataTooBig``)
    whatever its media type and whether the view reads it at all: Django's
    multipart parser would leave file parts out of that limit. Shorter than its
    Content-Length (the client went away mid-upload) it is a 400, so a cut-off
    body is never parsed, let alone stored.
    """
    try:
        body = request.body
    except UnreadablePostError as exc:
        raise IncompleteBody("the connection broke before the whole body arrived") from exc
    announced = int(request.META.get("CONTENT_LENGTH") or 0)
    if len(body) < announced:
        raise IncompleteBody(
            f"the body ended after {len(body)} of the {announced} bytes of its Content-Length"
        )


# One decoder for every body (simplejson.loads with hooks builds one per call).
_decoder = simplejson.JSONDecoder(parse_float=JSONNumber, parse_int=_parse_int)


class ExactJSONParser(BaseParser):
    """JSON whose numbers parse as exact decimals, so a payload is stored exactly
    as its sender wrote it (``1.10`` stays ``1.10``, 30-digit numbers keep
    every digit, ``1e400`` stays ``1e400``), and ``NaN``/``Infinity`` (not JSON)
    are refused."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return _decoder.decode(stream.read().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ParseError(f"the body is not UTF-8: {exc}") from exc
        except simplejson.JSONDecodeError as exc:
            raise ParseError(f"the body is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ParseError("the body's JSON is nested too deeply") from exc


def dump_json(value) -> str:
    """Compact JSON text of a value parsed by ``ExactJSONParser``, numbers kept exact.

    Text that would not encode to UTF-8 (a lone surrogate sent as ``\\ud800``)
    is kept as ``\\u`` escapes instead, so the value still round-trips.
    """
    text = simplejson.dumps(value, use_decimal=True, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = simplejson.dumps(value, use_decimal=True, separators=(",", ":"))
    return text


_NO_QUERY = QueryDict()


class Request(drf_request.Request):
    """DRF's request, with two shortcuts that give the same results:

    - a body sent as exactly ``application/json`` goes straight to the
      ``ExactJSONParser`` when it is the view's first parser (the one DRF's
      negotiation picks for it), without matching media types parser by parser;
    - no query string, no parsing: ``query_params`` is an empty, immutable ``QueryDict``.
    """

    def _load_data_and_files(self):
        if (
            self._data is not drf_request.Empty
            or self.content_type != "application/json"
            or not self.parsers
            or type(self.parsers[0]) is not ExactJSONParser
        ):
            return super()._load_data_and_files()
        self._files = MultiValueDict()
        body = self._request.body
        try:
            self._data = self.parsers[0].parse(io.BytesIO(body)) if body else {}
        except Exception:
            # As DRF does: the data left empty, the error raised.
            self._data = QueryDict("", encoding=self._request._encoding)
            raise
        finally:
            self._full_data = self._data

    @property
    def query_params(self):
        if not self._request.META.get("QUERY_STRING"):
            return _NO_QUERY
        return self._request.GET
