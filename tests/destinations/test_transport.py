"""Transport: no token in clear to another machine, no credentials echoed, failures named.

TLS is tested against the emulator server on 127.0.0.1 with certificates made here.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulators._server import EmulatorServer, Faults, Response
from segops.destinations.http import RetryPolicy, make_client, send
from segops.destinations.mediarithmics.destination import make_mediarithmics_client
from segops.destinations.moengage.client import make_moengage_client
from segops.destinations.moengage.publish import S3Publisher, publisher_for
from segops.destinations.transport import check_url, is_loopback
from segops.errors import DestinationError
from segops.model import Connection, Platform, Scalar
from tests.conftest import run, write_tree

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(
    "url",
    [
        "https://api.mediarithmics.com",
        "https://api-02.moengage.com:8443/",
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://localhost:9000/x",
        "http://[::1]:8080",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    check_url(url, "base_url", allow_insecure_http=False)


@pytest.mark.parametrize(
    "url,where",
    [
        ("http://api.mediarithmics.com", "api.mediarithmics.com"),
        ("http://10.1.2.3:8080/v1", "10.1.2.3:8080"),
        ("http://[2001:db8::1]/", "2001:db8::1"),
        ("http://localhost.example.com", "localhost.example.com"),
    ],
)
def test_http_to_another_machine_is_refused_unless_allowed(url: str, where: str) -> None:
    with pytest.raises(DestinationError) as caught:
        check_url(url, "base_url", allow_insecure_http=False)
    text = str(caught.value)
    assert f"base_url uses http:// to {where}" in text and "allow_insecure_http: true" in text
    check_url(url, "base_url", allow_insecure_http=True)


@pytest.mark.parametrize(
    "url,problem",
    [
        (f"https://kuser:{SECRET}@api.example.com", "holds credentials"),
        (f"http://kadmin:{SECRET}@127.0.0.1:9000", "holds credentials"),
        (f"https://{SECRET}@api.example.com", "holds credentials"),
        (f"http://kuser:{SECRET}@[::1", "is not a valid URL"),
        (f"https://kuser:{SECRET}@host:99999", "is not a valid URL"),
        (f"https://kuser:{SECRET}@host:port", "is not a valid URL"),
        (f"ftp://kuser:{SECRET}@host", "must be an http(s) URL"),
        ("https://", "must be an http(s) URL"),
        ("api.example.com", "must be an http(s) URL"),
    ],
)
def test_a_malformed_url_is_refused_without_echoing_it(url: str, problem: str) -> None:
    with pytest.raises(DestinationError) as caught:
        check_url(url, "publish.s3.endpoint_url", allow_insecure_http=True)
    text = str(caught.value)
    assert text.startswith("publish.s3.endpoint_url ") and problem in text
    assert SECRET not in text and "kuser" not in text and "kadmin" not in text


def test_loopback_names() -> None:
    assert is_loopback("localhost") and is_loopback("127.0.0.1") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com")


def connection(platform: Platform, **options: Scalar) -> Connection:
    return Connection("c", platform, platform, tuple(sorted(options.items())))


@pytest.mark.parametrize("platform", [Platform.MEDIARITHMICS, Platform.MOENGAGE])
def test_platform_clients_refuse_http_to_another_machine(platform: Platform) -> None:
    def make(conn: Connection) -> httpx.Client:
        if platform is Platform.MEDIARITHMICS:
            return make_mediarithmics_client(conn, SECRET, RetryPolicy())
        return make_moengage_client(conn, "ws", SECRET, RetryPolicy())

    with pytest.raises(DestinationError, match="http:// to 192.0.2.10"):
        make(connection(platform, base_url="http://192.0.2.10"))
    make(connection(platform, base_url="http://192.0.2.10", allow_insecure_http=True)).close()
    make(connection(platform, allow_insecure_http=False)).close()  # the https default


@pytest.mark.parametrize(
    "endpoint,allowed,problem",
    [
        (f"http://key:{SECRET}@127.0.0.1:9000", True, "holds credentials"),
        ("http://s3.internal.example:9000", False, "http:// to s3.internal.example:9000"),
        (f"https://key:{SECRET}@[bad", True, "is not a valid URL"),
        ("https://s3.example.com:70000", True, "is not a valid URL"),
    ],
)
def test_a_bad_s3_endpoint_is_refused_before_any_client_is_made(
    endpoint: str, allowed: bool, problem: str
) -> None:
    conn = connection(
        Platform.MOENGAGE,
        **{"publish.s3.bucket": "b", "publish.s3.endpoint_url": endpoint},
        allow_insecure_http=allowed,
    )
    with pytest.raises(DestinationError) as caught:
        publisher_for(conn)
    assert problem in str(caught.value) and SECRET not in str(caught.value)


def test_a_good_s3_endpoint_makes_a_publisher() -> None:
    for endpoint, allowed in (("https://s3.example.com", False), ("http://s3.lan", True)):
        conn = connection(
            Platform.MOENGAGE,
            **{"publish.s3.bucket": "bkt", "publish.s3.endpoint_url": endpoint},
            allow_insecure_http=allowed,
        )
        assert isinstance(publisher_for(conn), S3Publisher)


def test_the_schema_knows_allow_insecure_http_and_apply_refuses_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_MICS_TOKEN", SECRET)
    manifest = """\
apiVersion: segops/v1
kind: Segment
metadata: {name: cart}
spec:
  source:
    members: [{key: crm-1}]
  destinations:
    - connection: mics
      datamart_id: "1509"
      segment_technical_name: cart
      identifier: {kind: user_account_id, column: key}
      compartment_id: "12"
"""
    config = """\
version: 1
manifests: ["segments/*.yaml"]
connections:
  mics:
    platform: mediarithmics
    base_url: http://192.0.2.10
    token_env: T_MICS_TOKEN
    max_attempts: 1
"""
    write_tree(tmp_path, {"segops.yaml": config + "    allow_insecure_http: yes-please\n"})
    write_tree(tmp_path, {"segments/cart.yaml": manifest})
    code, out, err = run(tmp_path, "validate")
    assert code == 1 and "allow_insecure_http" in out + err
    write_tree(tmp_path, {"segops.yaml": config})
    code, out, err = run(tmp_path, "apply", "--auto-approve")
    assert code == 1
    text = out + err
    assert "base_url uses http:// to 192.0.2.10" in text and SECRET not in text
    assert "Traceback" not in text


# TLS and connection failures, named


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    names: list[x509.GeneralName],
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a leaf it signs for another host, and a self-signed leaf for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("segops test CA", ca_key, None, ca_key, [], ca=True)
    other_key = _key()
    other = _cert("other.test", other_key, ca, ca_key, [x509.DNSName("other.test")])
    self_key = _key()
    loopback = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    self_signed = _cert("127.0.0.1", self_key, None, self_key, loopback)
    files = {}
    for label, cert, key in (("other", other, other_key), ("self", self_signed, self_key)):
        pem = cert.public_bytes(serialization.Encoding.PEM)
        pem += key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        files[label] = folder / f"{label}.pem"
        files[label].write_bytes(pem)
    files["ca"] = folder / "ca.pem"
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return files


def tls_server(chain: Path) -> EmulatorServer:
    return EmulatorServer(lambda r: Response.json(200, {}), tls=_server_context(chain)).start()


def call(base_url: str, verify: ssl.SSLContext | bool = True, **policy: float) -> str:
    """Return the message of the error one call ends in."""
    settings = {"max_attempts": 3, "base_delay": 0.01, "deadline": 10, "timeout": 2, **policy}
    retry = RetryPolicy(**settings)  # type: ignore[arg-type]
    transport = httpx.HTTPTransport(verify=verify)
    client = make_client(base_url, retry, transport=transport, headers={"Authorization": SECRET})
    with client:
        with pytest.raises(DestinationError) as caught:
            send(client, "GET", "/v1/things?token=q", policy=retry)
    text = str(caught.value)
    assert SECRET not in text and "token=q" not in text and text.startswith("GET /v1/things: ")
    return text


def test_a_self_signed_certificate_says_verification_failed(pki: dict[str, Path]) -> None:
    server = tls_server(pki["self"])
    try:
        text = call(server.base_url)
    finally:
        server.stop()
    port = server.base_url.rsplit(":", 1)[1]
    assert f"TLS: the certificate of 127.0.0.1:{port} could not be verified" in text
    assert "self-signed certificate" in text
    assert len(server.requests) == 0 and "attempts" not in text  # not retried


def test_a_certificate_for_another_host_says_so(pki: dict[str, Path]) -> None:
    server = tls_server(pki["other"])
    try:
        text = call(server.base_url, ssl.create_default_context(cafile=str(pki["ca"])))
    finally:
        server.stop()
    assert "is not valid for that host name" in text and "127.0.0.1" in text


def test_the_trusted_certificate_works(pki: dict[str, Path]) -> None:
    server = EmulatorServer(
        lambda r: Response.json(200, {"ok": True}),
        tls=_server_context(pki["self"]),
    ).start()
    try:
        context = ssl.create_default_context(cafile=str(pki["self"]))
        with make_client(
            server.base_url, RetryPolicy(), transport=httpx.HTTPTransport(verify=context)
        ) as client:
            assert send(client, "GET", "/x", policy=RetryPolicy()).json() == {"ok": True}
    finally:
        server.stop()


def _server_context(chain: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    return context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_names_the_host_and_is_retried() -> None:
    port = free_port()
    text = call(f"http://127.0.0.1:{port}")
    assert f"connection to 127.0.0.1:{port} refused, 3 attempts made" in text


def test_a_name_that_does_not_resolve_says_dns() -> None:
    text = call("https://segops-no-such-host.invalid", max_attempts=1)
    assert "DNS: the name of segops-no-such-host.invalid could not be resolved" in text


def test_a_server_that_never_answers_says_timed_out() -> None:
    server = EmulatorServer(lambda r: Response.json(200, {}), Faults(latency=10)).start()
    try:
        text = call(server.base_url, max_attempts=1, timeout=0.5, deadline=0.6)
    finally:
        server.stop()
    assert "in time" in text and "127.0.0.1" in text
