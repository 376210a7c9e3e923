"""Amazon SQS's protocols at ``/sqs``, over the same store as the native API.

``protocol`` reads a request (AWS JSON 1.0 or the query protocol) into the
JSON protocol's parameters and writes results and errors back in the
request's protocol; ``actions`` are the SQS actions, each a few checks and
calls into ``messages_app.domain``; ``digests`` computes the MD5s the SDKs
check; ``auth`` verifies Signature Version 4; ``views`` is the endpoint.
"""
