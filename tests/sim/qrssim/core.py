"""The Simulator object: one model, one clock and scheduler, the recorder, the
fault table and the TLS contexts, shared by the QRS and control listeners."""

import ssl
import threading

from . import config as knobs
from .faults import FaultTable
from .filters import Schema
from .model import Model, prototype_objects
from .notify import Notifier
from .qrs_api import QrsApi
from .recorder import Recorder
from .runs import Clock, RunEngine, Scheduler, UdpEmitter
from .server import make_tls_context
from .util import GuidSource

CALL_RING = 100000


class Simulator:
    def __init__(self, fixture, seed, server_cert, server_key, ca, udp_target=None,
                 record_file=None, strict=True, log=False):
        self.fixture, self.seed, self.log = fixture, seed, log
        # Guards the model and every run; the scheduler thread and request threads share it.
        self.lock = threading.Lock()
        self.startup_config = knobs.fresh()
        self.startup_config["strict_filter"] = strict
        self.config = dict(self.startup_config)
        self.clock = Clock()
        self.scheduler = Scheduler(self.clock)
        self.model = Model(fixture, GuidSource(seed))  # FixtureError refuses to start
        self.schemas = {kind: Schema(objs) for kind, objs in prototype_objects(GuidSource(0)).items()}
        self.engine = RunEngine(self)
        self.notifier = Notifier(self)
        self.recorder = Recorder(CALL_RING, record_file)
        self.faults = FaultTable(seed)
        self.udp = UdpEmitter(udp_target) if udp_target else None
        self.hang_gate = threading.Event()
        # tls-reject needs a certificate in the handshake; the http-4xx modes let a
        # certificate-less client through so the API can answer 401/403. (Python's ssl
        # has no verify callback, so a presented but invalid certificate still fails
        # the handshake in every mode.)
        self._tls = {
            True: make_tls_context(server_cert, server_key, ca, ssl.CERT_REQUIRED),
            False: make_tls_context(server_cert, server_key, ca, ssl.CERT_OPTIONAL),
        }
        self.api = QrsApi(self)

    def tls_context(self):
        return self._tls[self.config["auth_mode"] == "tls-reject"]

    def replace_fixture(self, fixture):
        """POST /_sim/fixture: a new model; runs in flight are abandoned."""
        model = Model(fixture, GuidSource(self.seed))
        with self.lock:
            self._drop_runs()
            self.model = model

    def reset(self):
        """POST /_sim/reset: back to the state right after start-up (fixture, knobs,
        clock mode), with no runs, faults or recorded calls; hung requests are released."""
        model = Model(self.fixture, GuidSource(self.seed))
        with self.lock:
            self._drop_runs()
            self.model = model
            # A new dict, not clear()+update(): request threads read knobs without the lock.
            self.config = dict(self.startup_config)
        self.faults.clear()
        self.recorder.clear()
        self.notifier.reset()
        if self.udp is not None:
            self.udp.sent.clear()
        self.clock.set_manual(False)
        self.scheduler.kick()
        gate, self.hang_gate = self.hang_gate, threading.Event()
        gate.set()

    def _drop_runs(self):
        self.engine.gen += 1  # steps still queued for old runs become no-ops
        self.scheduler.clear()
        for run in self.model.sessions.values():
            if run.started_evt is not None:
                run.started_evt.set()  # free synchronous starts waiting on them
