"""The httpx client of a MoEngage connection, and its credentials from the environment."""

from __future__ import annotations

import httpx

from segops.destinations.http import RetryPolicy, make_client
from segops.model import Connection


def make_moengage_client(
    connection: Connection,
    workspace_id: str,
    api_key: str,
    policy: RetryPolicy,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """Return a client of the connection's data centre, with Basic auth and MoEngage headers.

    Base URL: option `base_url`, else `https://api-{data_center}.moengage.com`. Headers:
    `MOE-APPKEY: <workspace id>` (the reference requires it for v3 only; harmless on v2) and
    `Database: <database>` when the connection sets `database`. Bodies go as JSON, so httpx
    sends `Content-Type: application/json`. An http:// base URL to another machine is
    refused unless the connection sets `allow_insecure_http: true`.
    """
    data_center = connection.option("data_center", "01")
    base_url = connection.option("base_url") or f"https://api-{data_center}.moengage.com"
    headers = {"MOE-APPKEY": workspace_id}
    database = connection.option("database")
    if database:
        headers["Database"] = str(database)
    return make_client(
        str(base_url),
        policy,
        auth=(workspace_id, api_key),
        headers=headers,
        transport=transport,
        allow_insecure_http=connection.option("allow_insecure_http") is True,
    )
