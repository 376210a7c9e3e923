"""SQS's two protocols, read into one shape and written back.

AWS JSON 1.0 (what current SDKs send): ``POST`` with ``X-Amz-Target:
AmazonSQS.<Action>`` and a JSON body of the action's parameters; results are
JSON, errors ``{"__type", "message"}`` with the query protocol's code in
``x-amzn-query-error``. The query protocol (older SDKs): form fields
``Action=...`` with lists and maps flattened (``Attribute.1.Name``,
``MessageAttribute.1.Value.StringValue``, ``SendMessageBatchRequestEntry.2.Id``);
results and errors are XML. Both are read into the JSON protocol's parameters,
so the actions see one shape.
"""

import uuid
from xml.sax.saxutils import escape

import simplejson
from django.http import HttpResponse

from .errors import SQSError

JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "AmazonSQS."
XML_NAMESPACE = "http://queue.amazonaws.com/doc/2012-11-05/"

# Query protocol: flattened names, by the JSON protocol's name and how to fold them.
LISTS = {
    "AttributeName": "AttributeNames",
    "MessageAttributeName": "MessageAttributeNames",
    "MessageSystemAttributeName": "MessageSystemAttributeNames",
    "TagKey": "TagKeys",
}
MAPS = {  # flattened name: (JSON name, key field, value field)
    "Attribute": ("Attributes", "Name", "Value"),
    "MessageAttribute": ("MessageAttributes", "Name", "Value"),
    "Tag": ("Tags", "Key", "Value"),
}
ENTRIES = (
    "SendMessageBatchRequestEntry",
    "DeleteMessageBatchRequestEntry",
    "ChangeMessageVisibilityBatchRequestEntry",
)
# Query protocol results: the element name of each list's members.
MEMBERS = {
    "QueueUrls": "QueueUrl",
    "Messages": "Message",
    "Failed": "BatchResultErrorEntry",
}
SUCCESSFUL_MEMBERS = {
    "SendMessageBatch": "SendMessageBatchResultEntry",
    "DeleteMessageBatch": "DeleteMessageBatchResultEntry",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibilityBatchResultEntry",
}
XML_MAPS = {  # JSON name: (element, key element, value element)
    "Attributes": ("Attribute", "Name", "Value"),
    "MessageAttributes": ("MessageAttribute", "Name", "Value"),
    "Tags": ("Tag", "Key", "Value"),
}


class Request:
    """A request read: its action, parameters, and in which protocol to answer."""

    def __init__(self, action: str, params: dict, is_json: bool):
        self.action = action
        self.params = params
        self.is_json = is_json


def read(request) -> Request:
    target = request.headers.get("X-Amz-Target")
    if target is not None:
        action = target.removeprefix(TARGET_PREFIX) if target.startswith(TARGET_PREFIX) else ""
        try:
            params = simplejson.loads(request.body or b"{}")
        except (simplejson.JSONDecodeError, UnicodeDecodeError):
            raise SQSError("SerializationException", "The request body is not JSON.") from None
        if not isinstance(params, dict):
            raise SQSError("SerializationException", "The request body is not a JSON object.")
        return Request(action, params, is_json=True)
    fields = {**request.GET.dict(), **request.POST.dict()}
    return Request(fields.pop("Action", ""), unflatten(fields), is_json=False)


def unflatten(fields: dict[str, str]) -> dict:
    """The query protocol's flattened fields as the JSON protocol's parameters."""
    tree: dict = {}
    for name, value in fields.items():
        node = tree
        *path, last = name.split(".")
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[last] = value
    return _fold(tree)


def _indexed(node) -> list:
    """``{"1": a, "2": b}`` as ``[a, b]``, in index order."""
    if not isinstance(node, dict):
        return []
    return [node[k] for k in sorted((k for k in node if k.isdigit()), key=int)]


def _fold(tree: dict) -> dict:
    params: dict = {}
    for name, node in tree.items():
        if name in LISTS:
            params[LISTS[name]] = _indexed(node)
        elif name in MAPS:
            target, key, value = MAPS[name]
            params[target] = {
                item.get(key): _fold_value(name, item.get(value))
                for item in _indexed(node)
                if isinstance(item, dict)
            }
        elif name in ENTRIES:
            params["Entries"] = [_fold(e) if isinstance(e, dict) else {} for e in _indexed(node)]
        else:
            params[name] = node
    return params


def _fold_value(map_name: str, value):
    if map_name == "MessageAttribute" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
    return value


def _request_id() -> str:
    return str(uuid.uuid4())


def respond(request: Request | None, action: str, result: dict) -> HttpResponse:
    request_id = _request_id()
    if request is None or request.is_json:
        response = HttpResponse(simplejson.dumps(result), content_type=JSON_CONTENT_TYPE)
    else:
        body = (
            f'<?xml version="1.0"?><{action}Response xmlns="{XML_NAMESPACE}">'
            f"{_result_xml(action, result)}"
            f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
            f"</{action}Response>"
        )
        response = HttpResponse(body, content_type="text/xml")
    response["x-amzn-RequestId"] = request_id
    return response


def _result_xml(action: str, result: dict) -> str:
    if not result and action not in ("ListQueues", "ReceiveMessage"):
        return ""
    return f"<{action}Result>{_members_xml(action, result)}</{action}Result>"


def _members_xml(action: str, data: dict) -> str:
    parts = []
    for name, value in data.items():
        if name in XML_MAPS:
            element, key, inner = XML_MAPS[name]
            for k, v in value.items():
                value_xml = (
                    "".join(f"<{f}>{escape(str(x))}</{f}>" for f, x in v.items())
                    if isinstance(v, dict)
                    else escape(str(v))
                )
                parts.append(
                    f"<{element}><{key}>{escape(k)}</{key}><{inner}>{value_xml}</{inner}>"
                    f"</{element}>"
                )
        elif isinstance(value, list):
            member = MEMBERS.get(name) or SUCCESSFUL_MEMBERS[action]
            for item in value:
                inner = _members_xml(action, item) if isinstance(item, dict) else escape(item)
                parts.append(f"<{member}>{inner}</{member}>")
        elif isinstance(value, bool):
            parts.append(f"<{name}>{'true' if value else 'false'}</{name}>")
        else:
            parts.append(f"<{name}>{escape(str(value))}</{name}>")
    return "".join(parts)


def error(request: Request | None, exc: SQSError) -> HttpResponse:
    request_id = _request_id()
    fault = "Sender" if exc.sender else "Receiver"
    if request is None or request.is_json:
        body = simplejson.dumps({"__type": f"com.amazonaws.sqs#{exc.type}", "message": exc.message})
        response = HttpResponse(body, status=exc.status, content_type=JSON_CONTENT_TYPE)
        response["x-amzn-query-error"] = f"{exc.query_code};{fault}"
    else:
        body = (
            f'<?xml version="1.0"?><ErrorResponse xmlns="{XML_NAMESPACE}"><Error>'
            f"<Type>{fault}</Type><Code>{escape(exc.query_code)}</Code>"
            f"<Message>{escape(exc.message)}</Message><Detail/></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        response = HttpResponse(body, status=exc.status, content_type="text/xml")
    response["x-amzn-RequestId"] = request_id
    return response
