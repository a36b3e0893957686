"""The skills' urllib3 transport over real sockets: HTTPS pinned to the address the SSRF guard checked (Host,
SNI and the certificate still name the URL's host), and the same code on the runtime's urllib3 1.26."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook

from incident_loop.settings import Settings
from incident_loop.skills.base import SkillContext
from incident_loop.skills.errors import ExternalError
from incident_loop.skills.kvtable import KvTable
from incident_loop.skills.signing import new_secret
from incident_loop.skills.transport import Urllib3Transport
from incident_loop.skills.webhook_send import WebhookSendSkill
from incident_loop_dev.fakes import FakeVoyage, FakeWebhookReceiver
from incident_loop_dev.fakes.aws import KV_TABLE, skill_breakers
from incident_loop_dev.local.artifact import runtime_site

ROOT = Path(__file__).resolve().parents[2]
SECRET = new_secret()


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _pem(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A test CA, and certificates it signed for hooks.test and other.test."""
    folder, now = tmp_path_factory.mktemp("tls"), dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("skills test CA")).issuer_name(_name("skills test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    files = {"ca": _pem(folder / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))}
    for host in ("hooks.test", "other.test"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(host)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        files[f"{host}.cert"] = _pem(folder / f"{host}.pem", cert.public_bytes(serialization.Encoding.PEM))
        files[f"{host}.key"] = _pem(folder / f"{host}.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return files


@pytest.fixture
def client(skill_tables: Any) -> Any:
    """moto's DynamoDB with the skills' tables (tests/conftest.py)."""
    return skill_tables


def webhook(client: Any, ca: str) -> WebhookSendSkill:
    # hooks.test resolves to loopback, allow-listed by name; the connection is pinned to that address.
    return WebhookSendSkill(kv=KvTable(KV_TABLE, client), transport=Urllib3Transport(ca_certs=ca),
                            resolver=lambda host, port: ["127.0.0.1"], breaker_for=skill_breakers(client),
                            settings=Settings(webhook_allow_hosts="hooks.test", skill_read_timeout_s=2),
                            persistence=object())  # type: ignore[arg-type]


def test_https_is_pinned_to_the_checked_address_and_still_verifies_the_host(client: Any, tls: dict) -> None:
    with FakeWebhookReceiver(secrets=[SECRET]).use_tls(tls["hooks.test.cert"], tls["hooks.test.key"]) as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        out = webhook(client, tls["ca"]).execute({"url": f"https://hooks.test:{port}/in", "payload": {"n": 1},
                                                  "secrets": [SECRET]}, SkillContext("tenant-a"))
    assert out["status_code"] == 200 and len(receiver.effects) == 1
    call = receiver.calls[0]
    assert call.headers["host"] == f"hooks.test:{port}" and call.path == "/in"
    assert Webhook(SECRET).verify(call.body, call.headers) == {"n": 1}


def test_a_certificate_for_another_host_is_refused(client: Any, tls: dict) -> None:
    with FakeWebhookReceiver(secrets=[SECRET]).use_tls(tls["other.test.cert"], tls["other.test.key"]) as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        with pytest.raises(ExternalError) as caught:
            webhook(client, tls["ca"]).execute({"url": f"https://hooks.test:{port}/in", "payload": {},
                                                "secrets": [SECRET]}, SkillContext("tenant-a"))
    assert caught.value.code == "connection_error" and receiver.effects == {}


RUNTIME_PROBE = """
import json, sys, time, urllib3
from incident_loop.skills.transport import HttpRequest, TransportError, Urllib3Transport
plain, hooks, ca, port, closed, drip = sys.argv[1:7]
t = Urllib3Transport(ca_certs=ca)
out = {"urllib3": urllib3.__version__}
r = t.send(HttpRequest("POST", plain + "/v1/embeddings", {"authorization": "Bearer pa-fake"},
                       json.dumps({"model": "m", "input": ["a"]}).encode()), 1.0, 2.0)
out["plain"] = [r.status, len(r.json()["data"])]
r = t.send(HttpRequest("POST", f"https://hooks.test:{port}/in", {"content-type": "application/json"}, b"{}",
                       connect_ip="127.0.0.1"), 1.0, 2.0)
out["pinned_tls"] = r.status
for name, url, read in (("timeout", plain + "/v1/embeddings", 0.3), ("refused", closed, 1.0)):
    try:
        t.send(HttpRequest("POST", url, {}, b"{}"), 1.0, read)
    except TransportError as exc:
        out[name] = exc.kind
for path in ("/slow", "/slow-headers"):  # a byte every 0.1 s: inside every read timeout, never done
    started = time.monotonic()
    try:
        t.send(HttpRequest("GET", drip + path, {}, None), 0.5, 0.5)
    except TransportError as exc:
        out[path] = [exc.kind, round(time.monotonic() - started, 1)]
started = time.monotonic()  # 32 MB to a receiver that takes 128 KB every 0.1 s: a timeout, not a refusal
try:
    t.send(HttpRequest("POST", drip + "/slow-reader", {}, b"x" * (32 << 20)), 0.5, 0.5)
except TransportError as exc:
    out["/slow-reader"] = [exc.kind, round(time.monotonic() - started, 1)]
r = t.send(HttpRequest("GET", drip + "/quick", {}, None), 0.5, 0.5)  # the next call, on a fresh connection
out["after_drip"] = [r.status, r.body.decode()]
print(json.dumps(out))
"""


class DripServer:
    """HTTP on 127.0.0.1: /slow answers 200 with a 10,000-byte body sent a byte every 0.1 s, /slow-headers
    sends its headers that way, /slow-reader reads the request's body 128 KB every 0.1 s and never answers,
    /quick answers at once."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DripServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:
                    request = conn.recv(65536)
                    if not request:
                        return
                    line = request.split(b"\r\n", 1)[0]
                    if b" /quick " in line:
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nquick")
                        continue
                    if b" /slow-reader " in line:
                        while not self._stop.wait(0.1) and conn.recv(131072):
                            pass
                        return
                    conn.sendall(b"HTTP/1.1 200 OK\r\n" + (b"X-Drip: " if b" /slow-headers " in line else
                                                             b"Content-Length: 10000\r\n\r\n"))
                    for _ in range(10_000):
                        if self._stop.wait(0.1):
                            return
                        conn.sendall(b"x")
            except OSError:
                return


@pytest.mark.parametrize("runtime", [True, False], ids=["lambda-runtime-urllib3", "virtualenv-urllib3"])
def test_the_transport_works_on_both_urllib3_majors(runtime: bool, tls: dict) -> None:
    site = runtime_site(ROOT)
    if runtime and not (site / "urllib3").is_dir():
        pytest.fail(f"the runtime's SDK is not installed in {site}: run `make runtime`", pytrace=False)
    from incident_loop_dev.local.services import free_port

    with (FakeVoyage() as voyage, FakeWebhookReceiver().use_tls(tls["hooks.test.cert"], tls["hooks.test.key"]) as rx,
          DripServer() as drip):
        voyage.stall(0.0)  # the first request is answered at once,
        voyage.stall(1.0)  # the second (the timeout probe) is held past its read timeout
        path = [str(site)] if runtime else []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(ROOT / "layers" / "shared")])}
        args = [voyage.url, "hooks.test", tls["ca"], rx.url.rsplit(":", 1)[1], f"http://127.0.0.1:{free_port()}",
                drip.url]
        done = subprocess.run([sys.executable, "-c", RUNTIME_PROBE, *args], capture_output=True, text=True,
                              env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    version = out.pop("urllib3")
    assert version == "1.26.20" if runtime else version.startswith("2.")
    for path in ("/slow", "/slow-headers"):  # cut off at connect + read timeouts (1 s), not after 1,000 s
        kind, seconds = out.pop(path)
        assert kind == "timeout" and 0.9 <= seconds < 3.0, path
    kind, seconds = out.pop("/slow-reader")  # the body not taken within the socket timeout (0.5 s): a timeout
    assert kind == "timeout" and 0.4 <= seconds < 3.0
    assert out == {"plain": [200, 1], "pinned_tls": 200, "timeout": "timeout", "refused": "connection_error",
                   "after_drip": [200, "quick"]}
