"""A real InfluxDB 1.x server (Debian's `influxd`, 1.6) for tests and benches.

    server = InfluxServer(directory).start()   # free loopback ports, own dirs
    server.query("SELECT count(*) FROM m", db="butler")  -> parsed JSON
    server.stop(); server.start()                # same data, same port

The config file is written here: RPC and HTTP bind addresses on loopback,
reporting and the _internal monitor store off, meta/data/wal under
`directory`. Standard library only.
"""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InfluxServer:
    def __init__(self, directory):
        self.directory = os.path.join(directory, "influxdb")
        os.makedirs(self.directory, exist_ok=True)
        self.process = None
        self.config_path = os.path.join(self.directory, "influxdb.conf")
        self.log_path = os.path.join(self.directory, "influxd.log")
        self._choose_ports()

    def _choose_ports(self):
        """Free ports now; another process may take one before influxd binds it
        (the machine is shared), so the first start tries again with new ones."""
        self.port = _free_port()
        self.rpc_port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        d = self.directory
        with open(self.config_path, "w") as f:
            f.write(f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
  logging-enabled = false
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
""")

    def start(self, timeout=30):
        """Start and wait for /ping. The first start picks new ports when influxd
        cannot bind them; a restart keeps them (a test's Butler knows the URL)."""
        first = not hasattr(self, "_started_once")
        for attempt in range(3 if first else 1):
            try:
                self._start(timeout)
                self._started_once = True
                return self
            except RuntimeError:
                if not first or attempt == 2:
                    raise
                self._choose_ports()
        return self

    def _start(self, timeout):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(["influxd", "-config", self.config_path],
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"influxd exited: {open(self.log_path).read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                    if r.status == 204:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("influxd did not answer /ping")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def query(self, q, db="butler", epoch="ns"):
        data = urllib.parse.urlencode({"q": q, "db": db, "epoch": epoch}).encode()
        request = urllib.request.Request(f"{self.url}/query", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    def rows(self, q, db="butler"):
        """The rows of the first series as dicts (column -> value), [] when none."""
        result = self.query(q, db)["results"][0]
        if "error" in result:
            if "database not found" in result["error"]:
                return []
            raise AssertionError(result["error"])
        series = result.get("series") or []
        out = []
        for s in series:
            for values in s["values"]:
                row = dict(zip(s["columns"], values))
                row.update(s.get("tags") or {})
                out.append(row)
        return out

    def write(self, lines, db="butler", precision="ns"):
        request = urllib.request.Request(
            f"{self.url}/write?db={db}&precision={precision}", data=lines.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
