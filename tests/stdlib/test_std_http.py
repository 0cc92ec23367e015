"""std/tools' http_get: allowlists, SSRF refusals checked on resolved addresses, pinning, redirects, limits.

Traffic only ever goes to a server this test runs on 127.0.0.1. Names are
resolved by a fake resolver (the module's ``_system_resolve``), and every
outgoing connection passes through a recorder that refuses anything but
that server, so a refused address is shown to be refused before connecting.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        routes = {
            "/hello": lambda: self._send(200, "héllo".encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8"}),
            "/host": lambda: self._send(200, self.headers["Host"].encode()),
            "/to-hello": lambda: self._send(302, headers={"Location": "/hello"}),
            "/to-metadata": lambda: self._send(302, headers={"Location": "http://169.254.169.254/latest/meta-data"}),
            "/to-elsewhere": lambda: self._send(301, headers={"Location": "http://example.org/"}),
            "/loop": lambda: self._send(307, headers={"Location": "/loop"}),
            "/big": lambda: self._send(200, b"x" * 2_000_000),
            "/bomb": lambda: self._send(200, gzip.compress(b"\0" * 50_000_000), {"Content-Encoding": "gzip"}),
            "/gzip": lambda: self._send(200, gzip.compress(b"compressed text"), {"Content-Encoding": "gzip"}),
            "/brotli": lambda: self._send(200, b"....", {"Content-Encoding": "br"}),
            "/missing": lambda: self._send(404, b"not here"),
        }
        if self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "20")
            self.end_headers()
            try:
                for _ in range(20):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:  # the client gave up, as it should
                pass
            return
        routes.get(self.path, lambda: self._send(404))()


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def http(std, monkeypatch, server):
    """The module, with a fake resolver and a recorder of connections (only the test server is reachable)."""
    module = std("http")
    names = {"rebind.test": ["127.0.0.1"], "metadata.test": ["169.254.169.254"], "internal.test": ["10.0.0.1"],
             "mixed.test": ["93.184.216.34", "10.0.0.1"], "localhost": ["127.0.0.1", "::1"],
             "public.test": ["93.184.216.34"]}
    lookups: list[str] = []

    def resolve(host, port, type=0, **_):
        lookups.append(host)
        if host not in names:
            raise socket.gaierror(f"no such name in this test: {host}")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in names[host]]

    connections: list[tuple] = []
    real_connect = socket.create_connection

    def connect(address, *args, **kwargs):
        connections.append(address)
        if address[0] != "127.0.0.1" or int(address[1]) != server:
            raise AssertionError(f"a connection to {address} was attempted")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(module, "_system_resolve", resolve)
    monkeypatch.setattr(socket, "create_connection", connect)
    module.test_names, module.test_lookups, module.test_connections = names, lookups, connections
    yield module
    for attribute in ("test_names", "test_lookups", "test_connections"):
        delattr(module, attribute)


def local(std, server, **options):
    return std("tools").http_get_tool([f"127.0.0.1:{server}", f"rebind.test:{server}"], allow_private=True, **options)


def test_fetch_from_an_allowed_host(std, http, server):
    get = local(std, server)
    assert get(f"http://127.0.0.1:{server}/hello") == "héllo"
    assert get(f"http://127.0.0.1:{server}/to-hello") == "héllo"  # a redirect on the same host
    assert get(f"http://127.0.0.1:{server}/gzip") == "compressed text"


def test_fetch_allowed_by_the_environment(std, http, server, monkeypatch):
    monkeypatch.setenv("FMFLOW_HTTP_ALLOW", f"other.example, 127.0.0.1:{server}")
    monkeypatch.setenv("FMFLOW_HTTP_ALLOW_PRIVATE", "1")
    assert std("tools").http_get(f"http://127.0.0.1:{server}/hello") == "héllo"
    monkeypatch.delenv("FMFLOW_HTTP_ALLOW_PRIVATE")
    with pytest.raises(ValueError, match="not a public address"):
        std("tools").http_get(f"http://127.0.0.1:{server}/hello")
    monkeypatch.delenv("FMFLOW_HTTP_ALLOW")
    with pytest.raises(ValueError, match="is not allowed \\(add it to FMFLOW_HTTP_ALLOW\\)"):
        std("tools").http_get(f"http://127.0.0.1:{server}/hello")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "2130706433", "0x7f.1", "127.1",
                                  "[::ffff:127.0.0.1]", "169.254.169.254", "10.0.0.1", "192.168.1.1", "172.16.0.1",
                                  "100.64.0.1", "224.0.0.1", "0.0.0.0", "[fe80::1]", "[fc00::1]", "[2002:7f00:1::]",
                                  "metadata.test", "internal.test", "mixed.test"])
def test_private_loopback_and_link_local_addresses_are_refused_before_connecting(std, http, server, host):
    get = std("tools").http_get_tool([f"{host}:*"])
    with pytest.raises(ValueError, match="not a public address"):
        get(f"http://{host}:{server}/hello")
    assert http.test_connections == []


def test_an_octal_host_is_refused(std, http, server):
    with pytest.raises(ValueError, match="not a URL"):
        std("tools").http_get_tool(["0177.0.0.1:*"])(f"http://0177.0.0.1:{server}/")
    assert http.test_connections == []


@pytest.mark.parametrize("url, reason", [
    ("file:///etc/passwd", "only http and https"),
    ("ftp://public.test/x", "only http and https"),
    ("gopher://public.test:70/", "only http and https"),
    ("http://user:pass@public.test/", "user name or password"),
    ("http://public.test.evil.example/", "is not allowed"),
    ("http://evil.example/?public.test", "is not allowed"),
    ("http://public.test:8080/", "public.test:8080 is not allowed"),
    ("not a url at all", "only http and https"),
    ("http:///nohost", "no host"),
])
def test_urls_outside_the_allowlist_are_refused(std, http, url, reason):
    with pytest.raises(ValueError, match=reason):
        std("tools").http_get_tool(["public.test", "*.example.com"])(url)
    assert http.test_connections == [] and http.test_lookups == []


def test_allowlist_entries(std):
    allows = std("http")._entry_allows
    assert allows("docs.python.org", "docs.python.org", 443) and not allows("docs.python.org", "docs.python.org", 8080)
    assert allows("*.python.org", "docs.python.org", 80) and not allows("*.python.org", "python.org", 80)
    assert not allows("*.python.org", "evilpython.org", 80)
    assert allows("host:8080", "host", 8080) and allows("host:*", "host", 22) and not allows("host:8080", "host", 80)
    assert allows("[::1]:9000", "::1", 9000) and allows("[::1]", "::1", 443)


def test_redirects_are_checked_at_every_hop(std, http, server, monkeypatch):
    # The test server counts as public here, so that what is checked is the redirect's target.
    public = http._public
    monkeypatch.setattr(http, "_public", lambda address: str(address) == "127.0.0.1" or public(address))
    get = std("tools").http_get_tool([f"127.0.0.1:{server}", "169.254.169.254"])
    with pytest.raises(ValueError, match="169.254.169.254 is 169.254.169.254, which is not a public address"):
        get(f"http://127.0.0.1:{server}/to-metadata")
    with pytest.raises(ValueError, match="example.org:80 is not allowed"):
        get(f"http://127.0.0.1:{server}/to-elsewhere")
    with pytest.raises(ValueError, match="more than 5 redirects"):
        get(f"http://127.0.0.1:{server}/loop")
    assert {address[0] for address in http.test_connections} == {"127.0.0.1"}


def test_the_connection_is_pinned_to_the_checked_address(std, http, server):
    # rebind.test resolves to 127.0.0.1 once, then to 10.0.0.1: the fetch must use the first answer,
    # and never look the name up again (the client resolving it itself would fail: no such name).
    answers = iter([["127.0.0.1"], ["10.0.0.1"], ["10.0.0.1"]])
    real = http._system_resolve

    def rebinding(host, port, **kwargs):
        http.test_names["rebind.test"] = next(answers)
        return real(host, port, **kwargs)

    http._system_resolve = rebinding
    assert local(std, server)(f"http://rebind.test:{server}/host") == f"rebind.test:{server}"
    assert http.test_lookups == ["rebind.test"]
    assert http.test_connections == [("127.0.0.1", server)]


def test_size_time_and_encoding_limits(std, http, server):
    get = local(std, server)
    with pytest.raises(ValueError, match="larger than 1000000 bytes"):
        get(f"http://127.0.0.1:{server}/big")
    with pytest.raises(ValueError, match="larger than 1000000 bytes"):
        get(f"http://127.0.0.1:{server}/bomb")  # 50 MB of zeros in 50 KB of gzip: stopped at the limit
    with pytest.raises(ValueError, match="within 0.5s"):
        local(std, server, timeout=0.5)(f"http://127.0.0.1:{server}/slow")
    with pytest.raises(ValueError, match="'br', which is not read"):
        get(f"http://127.0.0.1:{server}/brotli")
    with pytest.raises(ValueError, match="answered HTTP 404"):
        get(f"http://127.0.0.1:{server}/missing")
    assert local(std, server, max_bytes=2_000_000)(f"http://127.0.0.1:{server}/big") == "x" * 2_000_000


def test_an_unknown_name_is_a_clear_error(std, http):
    with pytest.raises(ValueError, match="cannot resolve nowhere.test"):
        std("tools").http_get_tool(["nowhere.test"])("https://nowhere.test/")
