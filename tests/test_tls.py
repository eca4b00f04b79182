"""TLS against a real server: stunnel terminates TLS in front of a real Valkey (Debian builds servers without TLS)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from fixtures.sandbox import free_port, load_tools
from migrate.cli import run_cli
from migrate.errors import ExitCode
from tests.conftest import IN_CI


def tool(name: str) -> str:
    tools = load_tools()
    if name not in tools:
        message = f"{name} is not provisioned (run: scripts/servers)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return tools[name]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([tool("openssl"), *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=migrate-test-ca", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client", "other"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
    for name in ("server", "client"):
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    openssl("x509", "-req", "-in", "other.csr", "-signkey", "other.key", "-out", "other.crt", "-days", "2", cwd=d)
    return d


class Stunnel:
    def __init__(self, pki: Path, backend_port: int, mutual: bool) -> None:
        self.port = free_port()
        conf = pki / f"stunnel-{self.port}.conf"
        lines = ["foreground = yes", "pid =", "[redis]", f"accept = 127.0.0.1:{self.port}",
                 f"connect = 127.0.0.1:{backend_port}", f"cert = {pki / 'server.crt'}", f"key = {pki / 'server.key'}"]
        if mutual:
            lines += [f"CAfile = {pki / 'ca.crt'}", "verifyChain = yes"]
        conf.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen([tool("stunnel4"), str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _listening(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("stunnel did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def tunnel(pki, servers):
    server = servers.get("valkey-8.1")
    proxy = Stunnel(pki, server.port, mutual=False)
    yield proxy
    proxy.stop()


@pytest.fixture
def mutual_tunnel(pki, servers):
    server = servers.get("valkey-8.1")
    proxy = Stunnel(pki, server.port, mutual=True)
    yield proxy
    proxy.stop()


def identify(capsys, *args: str) -> tuple[int, str, str]:
    code = run_cli(["identify", "--retries", "1", "--connect-timeout", "3", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_tls_with_the_right_ca(capsys, pki, tunnel):
    code, out, err = identify(capsys, "--source", f"rediss://127.0.0.1:{tunnel.port}", "--tls-ca-file",
                              str(pki / "ca.crt"), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["source"]["product"] == "valkey"


def test_tls_verification_is_on_by_default(capsys, pki, tunnel):
    code, _, err = identify(capsys, "--source", f"rediss://127.0.0.1:{tunnel.port}")
    assert code == ExitCode.CONNECTION
    assert err.startswith("error: TLS handshake with source") and "(hint:" in err


def test_tls_wrong_ca_then_insecure(capsys, pki, tunnel):
    code, _, err = identify(capsys, "--source", f"rediss://127.0.0.1:{tunnel.port}", "--tls-ca-file",
                            str(pki / "other.crt"))
    assert code == ExitCode.CONNECTION and "TLS" in err
    code, _, err = identify(capsys, "--source", f"rediss://127.0.0.1:{tunnel.port}", "--tls-insecure")
    assert code == 0, err


def test_mutual_tls_needs_the_client_certificate(capsys, pki, mutual_tunnel):
    url = f"rediss://127.0.0.1:{mutual_tunnel.port}"
    code, _, err = identify(capsys, "--source", url, "--tls-ca-file", str(pki / "ca.crt"))
    assert code == ExitCode.CONNECTION, err
    code, _, err = identify(capsys, "--source", url, "--tls-ca-file", str(pki / "ca.crt"),
                            "--tls-cert-file", str(pki / "client.crt"), "--tls-key-file", str(pki / "client.key"))
    assert code == 0, err


def test_run_and_verify_write_and_read_through_tls(capsys, pki, tunnel, servers, tmp_path):
    """The hot-path channels (not only redis-py clients) speak TLS: a replay into, and a verification of, a target
    reached through the TLS tunnel only."""
    source = servers.get("redis-7.0")
    for i in range(500):
        source.client().set(f"k:{i}", f"v{i}")
    target = f"rediss://127.0.0.1:{tunnel.port}"
    common = ["--source", source.url, "--target", target, "--tls-ca-file", str(pki / "ca.crt")]
    assert run_cli(["run", *common, "--checkpoint", str(tmp_path / "cp.json")]) == 0, capsys.readouterr().err
    assert run_cli(["verify", *common]) == 0, capsys.readouterr().err
