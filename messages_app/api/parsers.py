import simplejson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


class ExactJSONParser(BaseParser):
    """JSON whose numbers parse as exact decimals, so a payload is stored exactly
    as its sender wrote it (``1.10`` stays ``1.10``, 30-digit numbers keep
    every digit), and ``NaN``/``Infinity`` (not JSON) are refused."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return simplejson.loads(stream.read().decode("utf-8"), use_decimal=True)
        except UnicodeDecodeError as exc:
            raise ParseError(f"the body is not UTF-8: {exc}") from exc
        except simplejson.JSONDecodeError as exc:
            raise ParseError(f"the body is not valid JSON: {exc}") from exc


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
