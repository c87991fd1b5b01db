"""schemathesis hooks for `make contract` (loaded by contract/schemathesis.toml).

An Idempotency-Key names one request: the API answers a second, different request under
the same key with 422 (/problems/idempotency-key-reused), as the IETF draft on the
header asks. The fuzzer draws keys from a small space and would reuse them across the
different bodies it generates, which it would then report as valid data refused. So each
valid key it generates is made unique here; invalid keys are sent as generated, and must
still be refused.
"""

import itertools
import re

import schemathesis

_VALID_KEY = re.compile(r"[!-~]{1,255}")
_SEQUENCE = itertools.count()


@schemathesis.hook
def before_call(context, case, **kwargs):
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and _VALID_KEY.fullmatch(key):
        suffix = f"~{next(_SEQUENCE)}"
        headers["Idempotency-Key"] = key[: 255 - len(suffix)] + suffix
