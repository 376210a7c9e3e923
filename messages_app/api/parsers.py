from decimal import Decimal

import simplejson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
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
    # -0 is the one JSON integer that int() would not give back as written.
    return JSONNumber(text) if text == "-0" else int(text)


class ExactJSONParser(BaseParser):
    """JSON whose numbers parse as exact decimals, so a payload is stored exactly
    as its sender wrote it (``1.10`` stays ``1.10``, 30-digit numbers keep
    every digit, ``1e400`` stays ``1e400``), and ``NaN``/``Infinity`` (not JSON)
    are refused."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        # DRF reads the request itself, past Django's own check of the body's size.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(body) > limit:
            raise RequestDataTooBig("the request body exceeds DATA_UPLOAD_MAX_MEMORY_SIZE")
        try:
            return simplejson.loads(
                body.decode("utf-8"), parse_float=JSONNumber, parse_int=_parse_int
            )
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
