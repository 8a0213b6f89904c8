"""Start and drive the QRS simulator from tests.

Used by the simulator's own tests and by Butler's integration tests::

    from simctl import start_qrs_sim

    with start_qrs_sim(tmp_path) as sim:
        status, body = sim.control("GET", "/_sim/stats")
        status, headers, data = sim.qrs("POST", "/qrs/task/<id>/start")
        # Butler is configured with sim.url and the files in sim.pki_dir
        # (client.pem, client_key.pem, root.pem).

Standard library only; the simulator runs under /usr/bin/python3.
"""

import contextlib
import http.client
import json
import os
import selectors
import ssl
import subprocess
import time
from urllib.parse import urlencode

SIM_DIR = os.path.dirname(os.path.abspath(__file__))
QRS_SIM = os.path.join(SIM_DIR, "qrs_sim.py")
MAKE_PKI = os.path.join(SIM_DIR, "..", "pki", "make_pki.sh")
PYTHON = "/usr/bin/python3"
DEFAULT_XRFKEY = "0123456789abcdef"
DEFAULT_USER = "UserDirectory=INTERNAL; UserId=sa_repository"


def make_pki(directory):
    """Create (or reuse) the test PKI in directory; returns the directory."""
    subprocess.run(["sh", MAKE_PKI, directory], check=True)
    return directory


class QrsSim:
    """A running simulator process."""

    def __init__(self, proc, port, control_port, pki_dir, log_path):
        self.proc, self.port, self.control_port = proc, port, control_port
        self.pki_dir, self.log_path = pki_dir, log_path
        self.url = f"https://127.0.0.1:{port}"  # the server certificate has IP:127.0.0.1

    def pki(self, name):
        """Path of a PKI file, e.g. pki('client.pem')."""
        return os.path.join(self.pki_dir, name)

    # ---- control API -------------------------------------------------------

    def control(self, method, path, body=None, timeout=30.0):
        """Call the control API. -> (status, decoded JSON or None)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode("utf-8")
            headers = {} if data is None else {"Content-Type": "application/json"}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
        finally:
            conn.close()

    def wait_calls(self, path_re=None, method=None, count=1, timeout_ms=5000, since=0, route=None):
        """Long-poll until `count` matching QRS calls were answered (route "tls_rejected"
        matches refused handshakes). -> list of records."""
        query = {"count": count, "timeout_ms": timeout_ms, "since": since}
        for key, value in (("path_re", path_re), ("method", method), ("route", route)):
            if value:
                query[key] = value
        status, body = self.control("GET", "/_sim/calls/wait?" + urlencode(query),
                                    timeout=timeout_ms / 1000.0 + 10)
        if status != 200:
            raise TimeoutError(f"{count} call(s) matching {query} not seen; got {len(body['calls'])}")
        return body["calls"]

    # ---- QRS side ----------------------------------------------------------

    def ssl_context(self, cert="client"):
        """A client context trusting the site CA, presenting <cert>.pem (None = no certificate)."""
        ctx = ssl.create_default_context(cafile=self.pki("root.pem"))
        if cert:
            ctx.load_cert_chain(self.pki(f"{cert}.pem"), self.pki(f"{cert}_key.pem"))
        return ctx

    def connection(self, cert="client", timeout=10.0):
        """A keep-alive HTTPS connection to the QRS port."""
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ssl_context(cert),
                                           timeout=timeout)

    def qrs(self, method, path, body=None, headers=None, xrfkey=DEFAULT_XRFKEY, user=DEFAULT_USER,
            cert="client", conn=None, timeout=10.0):
        """One QRS call with a valid Xrfkey (query and header) and X-Qlik-User unless
        told otherwise. `path` may already carry a query string; it is sent as given.
        -> (status, headers dict with lower-case names, body bytes)."""
        if xrfkey is not None:
            path += ("&" if "?" in path else "?") + "xrfkey=" + xrfkey
        # Marks the tests' own calls, so that a check of Butler's calls
        # (tests/integration/sense_calls.py) can tell them apart.
        hdrs = {"User-Agent": "simctl"}
        if xrfkey is not None:
            hdrs["X-Qlik-Xrfkey"] = xrfkey
        if user is not None:
            hdrs["X-Qlik-User"] = user
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        own = conn is None
        conn = conn or self.connection(cert, timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            if own:
                conn.close()

    def qrs_json(self, method, path, **kw):
        """qrs() for JSON answers: -> (status, decoded body)."""
        status, _, data = self.qrs(method, path, **kw)
        return status, (json.loads(data) if data else None)

    # ---- lifecycle ---------------------------------------------------------

    def stop(self, timeout=5.0):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


@contextlib.contextmanager
def start_qrs_sim(tmpdir, fixture=None, udp_target=None, extra_args=(), ready_timeout=15.0):
    """Make a PKI in tmpdir/pki, start the simulator and yield a QrsSim; stop it afterwards.

    fixture: None (the bundled fixture.json), a path, or a dict (written to tmpdir).
    udp_target: "host:port" or (host, port) for the log-appender datagrams.
    The simulator's stderr goes to tmpdir/qrs_sim.log."""
    tmpdir = os.path.abspath(str(tmpdir))
    pki = make_pki(os.path.join(tmpdir, "pki"))
    args = [PYTHON, QRS_SIM, "--server-cert", os.path.join(pki, "server.pem"),
            "--server-key", os.path.join(pki, "server_key.pem"), "--ca", os.path.join(pki, "root.pem")]
    if isinstance(fixture, dict):
        path = os.path.join(tmpdir, "qrs_fixture.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(fixture, f)
        fixture = path
    if fixture is not None:
        args += ["--fixture", str(fixture)]
    if udp_target is not None:
        if not isinstance(udp_target, str):
            udp_target = f"{udp_target[0]}:{udp_target[1]}"
        args += ["--udp-target", udp_target]
    args += list(extra_args)

    log_path = os.path.join(tmpdir, "qrs_sim.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log)
    sim = None
    try:
        line = _read_ready(proc, ready_timeout)
        parts = line.split()
        if len(parts) != 3 or parts[0] != "READY":
            raise RuntimeError(f"qrs_sim: unexpected first line {line!r}")
        sim = QrsSim(proc, int(parts[1]), int(parts[2]), pki, log_path)
        yield sim
    except BaseException:
        if sim is None:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                detail = f.read()[-4000:]
            proc.kill()
            proc.wait()
            proc.stdout.close()
            raise RuntimeError(f"qrs_sim did not start:\n{detail}") from None
        raise
    finally:
        if sim is not None:
            sim.stop()


def _read_ready(proc, timeout):
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError("qrs_sim: no READY line in time")
            if sel.select(remaining):
                return proc.stdout.readline().decode("utf-8", "replace").strip()
            if proc.poll() is not None:
                raise RuntimeError("qrs_sim exited before READY")
