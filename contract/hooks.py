"""schemathesis hooks for `make contract` (loaded by contract/schemathesis.toml).

An Idempotency-Key names one request: the API answers a second, different request under
the same key with 422 (/problems/idempotency-key-reused), as the IETF draft on the
header asks. The fuzzer draws keys from a small space and would reuse them across the
different bodies it generates, which it would then report as valid data refused. So each
valid key it generates is made unique here; invalid keys are sent as generated, and must
still be refused. Generated callback URLs are replaced likewise (see below).
"""

import ast
import itertools
import os
import re
import threading

import schemathesis

# Hypothesis describes a filtered strategy by parsing its lambda's module with
# `ast.parse`. CPython 3.11 keeps the depth counter of its AST conversion in
# interpreter-wide state, so two of schemathesis's worker threads parsing the same large
# module at once can corrupt it, which fails the run with "AST constructor recursion
# depth mismatch" (a SystemError) now and then. Parsing is rare (once per module, then
# cached): one thread at a time costs nothing.
_PARSE = ast.parse
_PARSE_LOCK = threading.Lock()


def _parse_one_at_a_time(*args, **kwargs):
    with _PARSE_LOCK:
        return _PARSE(*args, **kwargs)


ast.parse = _parse_one_at_a_time

_VALID_KEY = re.compile(r"[!-~]{1,255}")
_SEQUENCE = itertools.count()


@schemathesis.hook
def before_call(context, case, **kwargs):
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and _VALID_KEY.fullmatch(key):
        suffix = f"~{next(_SEQUENCE)}"
        headers["Idempotency-Key"] = key[: 255 - len(suffix)] + suffix
    _replace_callback(case.body)


# A callback URL the fuzzer makes up (any string the document allows) names hosts this
# API refuses to call back, which it would then report as valid data refused: a valid
# one is replaced by the run's own callback (the mocks, on loopback, which the run's API
# is allowed to call). Invalid values are sent as generated, and must still be refused.
_CALLBACK_URL = os.environ.get("CONTRACT_CALLBACK_URL")
_MAX_CALLBACK_CHARS = 2048


def _replace_callback(body):
    if not isinstance(body, dict) or _CALLBACK_URL is None:
        return
    url = body.get("callback_url")
    if isinstance(url, str) and len(url) <= _MAX_CALLBACK_CHARS and "\x00" not in url:
        body["callback_url"] = _CALLBACK_URL
