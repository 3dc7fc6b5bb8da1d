"""HTTP to an address that was already checked: no second name lookup, no redirects.

Both services fetch URLs that a client chose: the call API's webhook worker POSTs to an
app's webhook URL, the auth server GETs a client's ``jwks_uri``. Each resolves the host,
checks the addresses (server-side request forgery), then connects to a checked address
itself — a library resolving the name again could get another answer (DNS rebinding) —
naming the host in ``Host`` and in TLS (SNI, certificate check).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import urllib3


@contextmanager
def pinned_request(
    method: str,
    scheme: str,
    address: str,
    port: int,
    host: str,
    path: str,
    *,
    headers: dict[str, str],
    timeout: float,
    body: bytes | None = None,
) -> Iterator[urllib3.BaseHTTPResponse]:
    """One request to ``address`` (an IP address already checked), for ``host``; the
    response is read by the caller (``preload_content=False``), then the connection closes.
    urllib3's errors (``urllib3.exceptions.HTTPError``) propagate."""
    limit = urllib3.Timeout(total=timeout)
    pool: urllib3.HTTPConnectionPool
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            timeout=limit,
            retries=False,
            maxsize=1,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=limit, retries=False, maxsize=1)
    try:
        response = pool.urlopen(
            method,
            path,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            yield response
        finally:
            response.release_conn()
    finally:
        pool.close()
