"""Task execution (sense-interfaces.md 4.7): the simulation clock, a one-thread
scheduler, the run state machine, and the log-appender datagrams a run emits.

One scheduler thread with a heap of timed callbacks drives every run, instead
of a thread or timer per run: a benchmark may start thousands of tasks a second.
"""

import heapq
import itertools
import socket
import sys
import threading
import time
import traceback
from collections import deque

from .util import STATUS_NAMES, iso_ms, log4net_date

SCHEDULER_USER = "INTERNAL\\sa_scheduler"


class Clock:
    """Simulation time in seconds. Real time by default; manual mode freezes it and
    moves only on advance(), so a test can step a run through its states."""

    def __init__(self):
        self._lock = threading.Lock()
        self._frozen = None
        self._offset = 0.0
        self._wall_minus_mono = time.time() - time.monotonic()

    @property
    def manual(self):
        return self._frozen is not None

    def now(self):
        frozen = self._frozen
        return frozen if frozen is not None else time.monotonic() + self._offset

    def wall(self, now):
        return now + self._wall_minus_mono

    def set_manual(self, manual):
        with self._lock:
            if manual and self._frozen is None:
                self._frozen = time.monotonic() + self._offset
            elif not manual and self._frozen is not None:
                # Keep time continuous: real time resumes from the frozen instant.
                self._offset = self._frozen - time.monotonic()
                self._frozen = None

    def advance(self, ms):
        with self._lock:
            if self._frozen is None:
                raise ValueError("advance_ms needs manual mode")
            self._frozen += ms / 1000.0


class Scheduler:
    """Runs callbacks at simulation times. Each wake-up runs every callback that is
    due within COALESCE_S, so under load one wake-up serves many runs instead of
    one futex wake and GIL hand-off per step; steps may run up to 2 ms early."""

    COALESCE_S = 0.002

    def __init__(self, clock):
        self.clock = clock
        self._heap = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def at(self, due, fn, *args):
        item = (due, next(self._seq), fn, args)
        with self._cond:
            heapq.heappush(self._heap, item)
            if self._heap[0] is item:  # only an earlier deadline needs to wake the loop
                self._cond.notify()

    def kick(self):
        """Re-check deadlines (the clock moved or changed mode)."""
        with self._cond:
            self._cond.notify()

    def clear(self):
        with self._cond:
            self._heap.clear()

    def _loop(self):
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    if self._heap:
                        horizon = self.clock.now() + (0 if self.clock.manual else self.COALESCE_S)
                        delay = self._heap[0][0] - horizon
                        if delay <= 0:
                            due = []
                            while self._heap and self._heap[0][0] <= horizon:
                                due.append(heapq.heappop(self._heap))
                            break
                        self._cond.wait(None if self.clock.manual else delay)
                    else:
                        self._cond.wait()
            for _, _, fn, args in due:
                try:
                    fn(*args)
                except Exception:  # a bug in one run must not stop every other run
                    traceback.print_exc(file=sys.stderr)


class UdpEmitter:
    """Sends log-appender datagrams to --udp-target and remembers what it sent."""

    def __init__(self, target):
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ValueError(f"--udp-target: expected host:port, got {target!r}")
        family, _, _, _, self.addr = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
        self.target = target
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._seq = itertools.count(1)
        self.sent = deque(maxlen=10000)

    def send(self, text, t_wall):
        data = text.encode("utf-8")
        error = None
        try:
            self._sock.sendto(data, self.addr)
        except OSError as e:  # e.g. EMSGSIZE; report it rather than break the run
            error = str(e)
        self.sent.append({"seq": next(self._seq), "t_wall": t_wall, "dst": self.target,
                          "bytes_len": len(data), "text": text, "error": error})


class Run:
    """One execution session: one or more attempts, each with its own ExecutionResult."""

    __slots__ = ("sid", "task", "plan", "outcome", "user", "attempt", "result", "gen", "token",
                 "created", "started_evt", "done", "udp_sent", "start_wall")


# Datagram prefix, level and message per event (butler-v15 profile, section 3.2).
_UDP_EVENTS = {
    "success": ("/scheduler-task-success//", "INFO", "Execution State Change to FinishedSuccess"),
    "failed": ("/scheduler-task-failed/", "ERROR", "Task finished with state FinishedFail. Max retries reached."),
    "error": ("/scheduler-task-failed/", "ERROR", "Failed to start session for task {id}"),
    "aborted": ("/scheduler-task-aborted/", "INFO", "Execution State Change to Aborting"),
    "distribute": ("/scheduler-distribute/", "INFO", "Exiting execute of Distribute task request. Result: {result}"),
}
_FINAL_STATUS = {"success": 7, "fail": 8, "error": 11}
_FINAL_EVENT = {7: "success", 8: "failed", 11: "error"}


class RunEngine:
    """The run state machine. Public methods expect the simulator lock to be held;
    scheduled steps take it themselves."""

    def __init__(self, sim):
        self.sim = sim
        self.gen = 0  # bumped on reset: steps of runs from before are dropped

    # ---- entry points ----------------------------------------------------

    def start(self, task, user, want_started=False):
        model, clock = self.sim.model, self.sim.clock
        now = clock.now()
        wall = clock.wall(now)
        run = Run()
        run.sid = model.guids.new()
        run.task, run.plan, run.outcome, run.user = task, task.plan, task.next_outcome(), user
        run.attempt, run.gen, run.token, run.done, run.udp_sent = 1, self.gen, 0, False, False
        run.start_wall = None
        run.created = iso_ms(wall)
        run.started_evt = threading.Event() if want_started else None
        r = run.result = model.new_result(task, run.sid, wall, SCHEDULER_USER)
        r["status"] = 1
        self._changed(r, 1)
        self._detail(r, "Changing task state to Triggered", run.created)
        self._detail(r, "Trying to start task. Sending task to slave scheduler", run.created)
        model.sessions[run.sid] = run
        task.active_runs.append(run)
        queue_s = run.plan["queueMs"] / 1000.0
        if run.plan["queuedStatus"] and queue_s > 0:
            self._transition(run, 3, run.created)
        step = self._skip if run.outcome == "skip" else self._begin_attempt
        if queue_s > 0:
            self._at(now + queue_s, step, run)
        else:  # no queue time: take the step now rather than wake the scheduler for it
            step(run)
        return run

    def stop(self, task):
        """POST /task/{id}/stop: abort every active run of the task."""
        for run in list(task.active_runs):
            if run.result["status"] not in (4, 5):
                run.token += 1  # cancel the steps already scheduled
                self._abort(run)

    def complete(self, task, outcome):
        """POST /_sim/tasks/{id}/complete: end the attempt in progress of every run now."""
        count = 0
        for run in list(task.active_runs):
            if run.result["status"] == 2 and run.start_wall is not None:
                run.token += 1  # cancels the scheduled end (and a not yet sent early datagram)
                run.outcome = outcome
                self._end_attempt(run)
                count += 1
        return count

    # ---- scheduling ------------------------------------------------------

    def _at(self, due, fn, run, *args):
        self.sim.scheduler.at(due, self._fire, fn, run, run.token, args)

    def _fire(self, fn, run, token, args):
        with self.sim.lock:
            if run.done or run.token != token or run.gen != self.gen:
                return
            fn(run, *args)

    def _now(self):
        clock = self.sim.clock
        now = clock.now()
        wall = clock.wall(now)
        return now, wall, iso_ms(wall)

    # ---- steps -------------------------------------------------------------

    def _detail(self, r, message, iso, details_type=2):
        r["details"].append({"id": self.sim.model.guids.new(), "detailsType": details_type,
                             "message": message, "detailCreatedDate": iso, "privileges": None})
        r["modifiedDate"] = iso

    def _transition(self, run, status, iso, apply=True):
        r = run.result
        self._detail(r, f"Changing task state from {STATUS_NAMES[r['status']]} to {STATUS_NAMES[status]}", iso)
        if apply:
            r["status"] = status
            self._changed(r)

    def _changed(self, r, change_type=2):
        """QRS change subscriptions (notify.py): an ExecutionResult was added (1) or updated (2)."""
        self.sim.notifier.changed("executionresult", r, change_type, ["status"])

    def _begin_attempt(self, run):
        model, task, plan = self.sim.model, run.task, run.plan
        now, wall, iso = self._now()
        if run.attempt > 1:  # a retry is a new ExecutionResult in the same session
            run.result = model.new_result(task, run.sid, wall, SCHEDULER_USER)
            run.result["status"] = 1
            self._changed(run.result, 1)
        r = run.result
        self._transition(run, 2, iso)
        r["startTime"] = iso
        run.start_wall = wall
        model.attach_script_log(task, r, wall, plan["scriptLog"])
        self._detail(r, "Reference to scriptlog added", iso)
        for extra in plan["detailsExtra"]:
            self._detail(r, str(extra), iso)
        if run.started_evt is not None:
            run.started_evt.set()
        if run.outcome == "hang":
            return
        end = now + plan["durationMs"] / 1000.0
        self._at(end, self._end_attempt, run)
        self._schedule_early_udp(run, end)

    def _schedule_early_udp(self, run, end):
        """udpLeadMs > 0: the datagram goes out before QRS shows the final state."""
        lead = run.plan["udpLeadMs"] / 1000.0
        outcome = run.outcome
        if lead <= 0 or (outcome == "fail" and run.attempt <= run.task.max_retries):
            return
        if run.task.task_type == 3 and outcome in _FINAL_STATUS:
            event, due = "distribute", end
        elif outcome in _FINAL_STATUS:
            event, due = _FINAL_EVENT[_FINAL_STATUS[outcome]], end
        elif outcome == "abort":
            event, due = "aborted", end + run.plan["abortStepMs"] / 1000.0
        else:
            return
        self._at(max(self.sim.clock.now(), due - lead), self._emit_step, run, event)

    def _emit_step(self, run, event):
        self._emit(run, event, _FINAL_STATUS.get(run.outcome, 7))

    def _end_attempt(self, run):
        now, wall, iso = self._now()
        if run.outcome == "fail" and run.attempt <= run.task.max_retries:
            r = run.result
            self._detail(r, run.plan["errorDetail"], iso, details_type=0)
            self._transition(run, 10, iso)
            self._stop_times(run, wall, iso, 10)
            run.attempt += 1
            self._at(now + run.plan["retryDelayMs"] / 1000.0, self._begin_attempt, run)
        elif run.outcome == "abort":
            self._abort(run)
        elif run.task.task_type == 3:
            self._distribute(run, _FINAL_STATUS[run.outcome])
        else:
            self._finalize(run, _FINAL_STATUS[run.outcome])

    def _skip(self, run):
        _, _, iso = self._now()
        self._transition(run, 9, iso)
        self._close(run)

    def _distribute(self, run, status):
        """Distribute tasks linger in 13 and 14 after the datagram (Butler must poll)."""
        now, _, iso = self._now()
        self._transition(run, 13, iso)
        if not run.udp_sent:
            self._emit(run, "distribute", status)
        half = run.plan["distributionLingerMs"] / 2000.0
        self._at(now + half, self._distribute_running, run, status)

    def _distribute_running(self, run, status):
        now, _, iso = self._now()
        self._transition(run, 14, iso)
        self._at(now + run.plan["distributionLingerMs"] / 2000.0, self._finalize, run, status, False)

    def _finalize(self, run, status, emit=True):
        now, wall, iso = self._now()
        r = run.result
        if status == 8:
            self._detail(r, run.plan["errorDetail"], iso, details_type=0)
        lag = run.plan["finalLagMs"] / 1000.0
        # finalLagMs: the final detail is written now, the status follows later.
        self._transition(run, status, iso, apply=lag <= 0)
        self._stop_times(run, wall, iso, status)
        if emit and not run.udp_sent:
            self._emit(run, _FINAL_EVENT[status], status)
        if lag > 0:
            self._at(now + lag, self._apply_final, run, status)
        else:
            self._close(run)

    def _apply_final(self, run, status):
        run.result["status"] = status
        self._changed(run.result)
        self._close(run)

    def _abort(self, run):
        now, _, iso = self._now()
        self._transition(run, 4, iso)
        self._at(now + run.plan["abortStepMs"] / 1000.0, self._aborting, run)

    def _aborting(self, run):
        now, _, iso = self._now()
        self._transition(run, 5, iso)
        if not run.udp_sent:  # the scheduler logs "Execution State Change to Aborting" here
            self._emit(run, "aborted", 6)
        self._at(now + run.plan["abortStepMs"] / 1000.0, self._aborted, run)

    def _aborted(self, run):
        _, wall, iso = self._now()
        self._transition(run, 6, iso)
        self._stop_times(run, wall, iso, 6)
        self._close(run)

    def _stop_times(self, run, wall, iso, status):
        r = run.result
        r["stopTime"] = iso
        if run.start_wall is not None:  # an attempt aborted while Triggered never started
            # In whole milliseconds of the two stamps, as iso_ms() truncates them: the
            # reference's example (sense-interfaces.md 1.5) has duration = stopTime - startTime
            # exactly, and rounding the float difference was 1 ms off for about half the runs.
            r["duration"] = int(wall * 1000) - int(run.start_wall * 1000)
            self.sim.model.finish_script_log(r, status)
            run.start_wall = None  # this attempt's times are final

    def _close(self, run):
        run.done = True
        self.sim.model.sessions.pop(run.sid, None)
        active = run.task.active_runs
        if run in active:
            active.remove(run)
        if run.started_evt is not None:
            run.started_evt.set()

    # ---- datagrams -------------------------------------------------------

    def _emit(self, run, event, status):
        """Send the run's datagram (one per run; udpLeadMs may have sent it already)."""
        sim = self.sim
        run.udp_sent = True
        if sim.udp is None:
            return
        cfg, task = sim.config, run.task
        prefix, level, message = _UDP_EVENTS[event]
        if event == "success" and cfg["udp_success_single_slash"]:
            prefix = "/scheduler-task-success/"
        message = message.format(id=task.id, result="Success" if status == 7 else "Failure")
        missing = "" if cfg["udp_missing_property_render"] == "empty" else "(null)"
        user = run.user if cfg["udp_user"] == "caller" else SCHEDULER_USER
        wall = sim.clock.wall(sim.clock.now())
        fields = [prefix, sim.model.node_name, task.name, task.app.name if task.app else missing, user,
                  task.id, task.app.id if task.app else missing, log4net_date(wall), level, run.sid,
                  message]
        sim.udp.send(";".join(fields), wall)
        if event == "distribute" and status == 7 and cfg["udp_distribute_also_success"]:
            self._emit(run, "success", status)
