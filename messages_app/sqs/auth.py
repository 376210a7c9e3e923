"""AWS Signature Version 4, checked when ``MQ_SQS_CREDENTIALS`` is set.

The expected signature is computed by botocore's own signer (the one the SDKs
sign with) over the request as received: the signed headers the client named,
its method, path, query and body, at the time it stamped. It is compared with
the one sent in constant time.
"""

import hmac
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from django.conf import settings

from .errors import SQSError

ALGORITHM = "AWS4-HMAC-SHA256"
# How far a request's time may be from ours, as AWS allows.
MAX_SKEW = timedelta(minutes=15)


def credentials() -> dict[str, str]:
    """``MQ_SQS_CREDENTIALS`` as key id -> secret."""
    pairs = (entry.partition(":") for entry in settings.MQ_SQS_CREDENTIALS)
    return {key: secret for key, _, secret in pairs}


def denied(type_: str, message: str) -> SQSError:
    return SQSError(type_, message, status=403)


def verify(request) -> None:
    """Refuse ``request`` unless signed by one of ``MQ_SQS_CREDENTIALS``; open when unset."""
    if not settings.MQ_SQS_CREDENTIALS:
        return
    header = request.headers.get("Authorization", "")
    if not header:
        raise denied("MissingAuthenticationToken", "Request is missing Authentication Token")
    algorithm, _, rest = header.partition(" ")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(",") if "=" in part)
    credential = fields.get("Credential", "").split("/")
    signed_headers = fields.get("SignedHeaders", "")
    signature = fields.get("Signature", "")
    if algorithm != ALGORITHM or len(credential) != 5 or not signed_headers or not signature:
        raise denied(
            "IncompleteSignature",
            "Authorization header requires Credential, SignedHeaders and Signature "
            f"with algorithm {ALGORITHM}.",
        )
    key_id, date, region, service, _ = credential
    secret = credentials().get(key_id)
    if secret is None:
        raise denied(
            "InvalidClientTokenId", "The security token included in the request is invalid."
        )
    stamp = request.headers.get("X-Amz-Date", "")
    try:
        moment = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise denied("IncompleteSignature", "The request has no valid X-Amz-Date.") from None
    if abs(datetime.now(UTC) - moment) > MAX_SKEW or not stamp.startswith(date):
        raise denied("SignatureDoesNotMatch", "Signature expired or not yet valid.")
    expected = _signature(request, key_id, secret, region, service, stamp, signed_headers)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise denied(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )


def _signature(request, key_id, secret, region, service, stamp, signed_headers) -> str:
    names = signed_headers.split(";")
    headers = {name: request.headers.get(name, "") for name in names}
    query = request.META.get("QUERY_STRING", "")
    url = f"http://{request.get_host()}{request.path}" + (f"?{query}" if query else "")
    signed = AWSRequest(method=request.method, url=url, headers=headers, data=request.body)
    signed.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key_id, secret), service, region)
    canonical = signer.canonical_request(signed)
    return signer.signature(signer.string_to_sign(signed, canonical), signed)
