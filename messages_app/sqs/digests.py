"""The MD5 digests SQS returns, which the SDKs recompute and compare.

The body's is the MD5 of its UTF-8 bytes. The attributes' is the MD5 of, for
each attribute in name order: the name, the data type (each as a 4-byte
big-endian length and the UTF-8 bytes), a transport byte (1 for a string
value, 2 for binary) and the value the same way (binary: its decoded bytes).
"""

import base64
import hashlib
import struct


def md5_of_body(body: str) -> str:
    return hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def md5_of_attributes(attributes: dict) -> str:
    """``attributes`` as the JSON protocol has them: ``{name: {"DataType",
    "StringValue" | "BinaryValue" (base64)}}``."""
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        digest.update(_field(name.encode()) + _field(value["DataType"].encode()))
        if "StringValue" in value:
            digest.update(b"\x01" + _field(value["StringValue"].encode()))
        else:
            digest.update(b"\x02" + _field(base64.b64decode(value["BinaryValue"])))
    return digest.hexdigest()
