#!/usr/bin/env python3
"""Following runs (issue 26 targets), measured side by side in one run against the QRS simulator.

One simulator (N tasks that each `hang` until the bench ends them), one Mosquitto, two Butlers
one after the other at log level info, UDP ingress on, `task_start.follow.poll_s` 5:

  A. the same N starts WITHOUT follow (`{"tag": "bench"}`): RssAnon idle and after the starts,
     Butler's CPU over the window: what the start itself leaves (spool, answers, arenas);
  B. the N starts WITH follow: RssAnon idle and while following (after every run was polled at
     least once), Butler's CPU over the same window beside the simulator's own CPU and its
     request rate. The follow's own cost = (B's increment) - (A's increment);
  C. latency, with B still following: for --udp runs the bench ends the run in the simulator
     (control API), then sends the appender's reload-finished datagram with the execution id
     and times (finished message received - datagram sent), both on this process's monotonic
     clock; the other runs are ended through the control API and timed from the simulator's
     recorded 404 answer for their session, or the answer of the first session-list call made
     after the run was ended (the list leaves an ended run out), on the simulator's
     CLOCK_MONOTONIC (the same clock system-wide on Linux), to the finished message received
     here.

Targets (issue 26): follow increment <= 4 MB RssAnon and <= 2 % of one core for 1,000 runs;
finished message <= 100 ms after the 404 (p99 here), <= 50 ms after a matching UDP event.

Usage: bench/follow_bench.py [--runs N] [--window S] [--udp K]
Uses build/butler (BUTLER_BINARY overrides). Prints a table and one JSON line; asserts nothing.
"""
import argparse
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "tests", "sim"))

import appender_emu  # noqa: E402
import simctl  # noqa: E402
from conftest import Broker, Butler, Client, rss_anon_kb, wait_until  # noqa: E402

POLL_S = 5
FINISHED = "butler/task/finished/"


class TimedClient(Client):
    """The harness's MQTT client, stamping each message with this process's monotonic clock."""

    def _on_message(self, client, userdata, message):
        received = time.monotonic()
        super()._on_message(client, userdata, message)
        with self.lock:
            self.messages[-1]["t_mono"] = received


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))]


def sim_calls(sim):
    return sim.control("GET", "/_sim/stats")[1]["calls"]


def finished_messages(client):
    with client.lock:
        return [dict(json.loads(m["payload"]), t_mono=m["t_mono"]) for m in client.messages
                if m["topic"].startswith(FINISHED)]


def session_ids(call):
    """The execution ids one session poll asked about: /qrs/executionsession/{id}, or the
    list /qrs/executionsession?filter=id eq A or id eq B ..."""
    if call["path"].startswith("/qrs/executionsession/"):
        return [call["path"].rsplit("/", 1)[1]]
    return re.findall(r"id(?:%20|\+| )eq(?:%20|\+| )([0-9a-fA-F-]{36})", call["raw_target"] or "")


def window(butler_pid, sim, seconds):
    """CPU share of one core (Butler, simulator) and the simulator's request rate over a window;
    RssAnon of Butler sampled each second (max)."""
    c0, s0, n0, t0 = cpu_s(butler_pid), cpu_s(sim.proc.pid), sim_calls(sim), time.monotonic()
    peak = 0
    while time.monotonic() - t0 < seconds:
        time.sleep(1)
        peak = max(peak, rss_anon_kb(butler_pid))
    c1, s1, n1, t1 = cpu_s(butler_pid), cpu_s(sim.proc.pid), sim_calls(sim), time.monotonic()
    _, body = sim.control("GET", f"/_sim/calls?since={n0}&path_re=^/qrs/executionsession")
    polled, lists, listed = set(), 0, 0
    for call in body["calls"]:
        if call["seq"] > n1:
            continue
        ids = session_ids(call)
        polled.update(ids)
        if call["path"] == "/qrs/executionsession":
            lists, listed = lists + 1, listed + len(ids)
    return {"sessions_polled": len(polled), "list_calls": lists,
            "ids_per_list_call": round(listed / lists, 1) if lists else None,
            "butler_cpu_pct": 100.0 * (c1 - c0) / (t1 - t0),
            "sim_cpu_pct": 100.0 * (s1 - s0) / (t1 - t0),
            "sim_req_per_s": (n1 - n0) / (t1 - t0), "rss_peak_kb": peak}


def make_butler(directory, broker, sim, runs, follow_yaml=True):
    os.makedirs(directory, exist_ok=True)
    butler = Butler(directory, broker, sim, udp=True, extra_yaml=(
        f"task_start: {{ follow: {{ poll_s: {POLL_S}, max: {runs} }} }}\n"))
    with open(butler.config_path) as f:  # the harness writes debug; measure at info
        text = f.read().replace("log: { level: debug }", "log: { level: info }", 1)
    with open(butler.config_path, "w") as f:
        f.write(text)
    return butler.start()


def start_all(client, request_id, follow, runs):
    request = {"tag": "bench", "requestId": request_id}
    if follow:
        request["follow"] = True
    client.publish("butler/task/start", json.dumps(request))
    answer = client.wait_result(request_id, timeout=300)
    assert len(answer["started"]) == runs, {k: answer[k] for k in answer if k != "started"}
    return answer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--udp", type=int, default=200, help="runs ended by a UDP datagram")
    parser.add_argument("--settle", type=float, default=2 * POLL_S,
                        help="seconds after the start answer before measuring")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="follow-bench-", dir=os.environ.get("TMPDIR"))
    broker = Broker(directory)
    broker.start()
    out = {"runs": args.runs, "poll_s": POLL_S, "window_s": args.window,
           "load_start": round(os.getloadavg()[0], 2)}
    with simctl.start_qrs_sim(directory) as sim:
        with open(os.path.join(ROOT, "tests", "sim", "fixture.json")) as f:
            fixture = json.load(f)
        app_id = fixture["apps"][0]["id"]
        namespace = uuid.UUID("7d1f0c52-7a1e-4f38-9b2d-4c1e8a7f3b62")
        fixture["tasks"] = [{"id": str(uuid.uuid5(namespace, str(i))), "name": f"Bench {i}",
                             "taskType": 0, "appId": app_id, "tags": ["bench"],
                             "customProperties": [], "run": {"outcomes": ["hang"]}}
                            for i in range(args.runs)]
        client = TimedClient(broker)
        client.subscribe("butler/#")

        # ---- A: the starts without follow --------------------------------------------------
        sim.control("POST", "/_sim/fixture", fixture)
        butler = make_butler(os.path.join(directory, "a"), broker, sim, args.runs)
        pid = butler.process.pid
        time.sleep(3)
        a_idle = rss_anon_kb(pid)
        start_all(client, "bench-a", False, args.runs)
        time.sleep(args.settle)
        a_after = rss_anon_kb(pid)
        a_window = window(pid, sim, args.window)
        assert butler.stop() == 0
        out.update(a_rss_idle_kb=a_idle, a_rss_after_kb=a_after,
                   a_butler_cpu_pct=round(a_window["butler_cpu_pct"], 2),
                   a_sim_cpu_pct=round(a_window["sim_cpu_pct"], 2),
                   a_sim_req_per_s=round(a_window["sim_req_per_s"], 1))

        # ---- B: the same starts with follow ------------------------------------------------
        sim.control("POST", "/_sim/fixture", fixture)  # drops A's runs
        butler = make_butler(os.path.join(directory, "b"), broker, sim, args.runs)
        pid = butler.process.pid
        time.sleep(3)
        b_idle = rss_anon_kb(pid)
        answer = start_all(client, "bench-b", True, args.runs)
        execution_of = {s["taskId"]: s["executionId"] for s in answer["started"]}
        time.sleep(args.settle)  # every follow polled at least once
        b_following = rss_anon_kb(pid)
        b_window = window(pid, sim, args.window)
        out.update(b_rss_idle_kb=b_idle, b_rss_following_kb=b_following,
                   b_rss_peak_kb=b_window["rss_peak_kb"],
                   b_butler_cpu_pct=round(b_window["butler_cpu_pct"], 2),
                   b_sim_cpu_pct=round(b_window["sim_cpu_pct"], 2),
                   b_sim_req_per_s=round(b_window["sim_req_per_s"], 1))
        out["b_sessions_polled_in_window"] = b_window["sessions_polled"]
        out["b_list_calls_in_window"] = b_window["list_calls"]
        out["b_ids_per_list_call"] = b_window["ids_per_list_call"]

        # ---- C: latency --------------------------------------------------------------------
        tasks = [t["id"] for t in fixture["tasks"]]
        udp_tasks, poll_tasks = tasks[:args.udp], tasks[args.udp:]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sent = {}
        for task_id in udp_tasks:  # one at a time: each datagram's own latency
            execution_id = execution_of[task_id]
            sim.control("POST", f"/_sim/tasks/{task_id}/complete", {"outcome": "success"})
            datagram = appender_emu.render("butler-v15", "task-success", {
                "task_id": task_id, "execution_id": execution_id, "task_name": "Bench"})
            sent[execution_id] = time.monotonic()
            sock.sendto(datagram, ("127.0.0.1", butler.udp_port))
            wait_until(lambda: any(m["executionId"] == execution_id
                                   for m in finished_messages(client)), 30,
                       message="finished message after the datagram")
        sock.close()
        completed = {}
        for task_id in poll_tasks:
            sim.control("POST", f"/_sim/tasks/{task_id}/complete", {"outcome": "success"})
            completed[execution_of[task_id]] = time.monotonic()
        wait_until(lambda: len(finished_messages(client)) >= args.runs, 120,
                   message="every finished message")
        # When QRS first told Butler a run had ended: the 404 of its session, or the first
        # list call made after the run was ended here (the list leaves an ended run out).
        _, body = sim.control("GET", "/_sim/calls?path_re=^/qrs/executionsession")
        answered_404 = {}
        for call in body["calls"]:
            if not call["response"]:
                continue
            t = (call["t_mono_ms"] + call["duration_ms"]) / 1000.0
            for execution_id in session_ids(call):
                listed = call["path"] == "/qrs/executionsession"
                if (listed and execution_id in completed and call["response"]["status"] == 200
                        and call["t_mono_ms"] / 1000.0 >= completed[execution_id]) or \
                        (not listed and call["response"]["status"] == 404):
                    answered_404[execution_id] = min(t, answered_404.get(execution_id, t))
        # Where the time after the 404 goes: Butler's turn to ask for the result, the
        # simulator's answer to that, then the answer to the message received here.
        _, body = sim.control("GET", "/_sim/calls?path_re=^/qrs/executionresult/full")
        result_call = {}
        for call in body["calls"]:
            match = re.search(r"eq(?:%20|\+| )([0-9a-fA-F-]{36})", call["raw_target"] or "")
            if match and call["response"] and match.group(1) in answered_404:
                begin = call["t_mono_ms"] / 1000.0
                if begin >= answered_404[match.group(1)] and match.group(1) not in result_call:
                    result_call[match.group(1)] = (begin, begin + call["duration_ms"] / 1000.0)
        done = finished_messages(client)
        poll_ids = {execution_of[t] for t in poll_tasks}
        legs = {"turnaround": [], "sim_result": [], "publish": []}
        for m in done:
            execution_id = m["executionId"]
            if execution_id in poll_ids and execution_id in result_call:
                begin, answered = result_call[execution_id]
                legs["turnaround"].append(1000.0 * (begin - answered_404[execution_id]))
                legs["sim_result"].append(1000.0 * (answered - begin))
                legs["publish"].append(1000.0 * (m["t_mono"] - answered))
        for leg, values in legs.items():
            out[f"leg_{leg}_p50_ms"] = rnd(percentile(values, 50))
            out[f"leg_{leg}_p99_ms"] = rnd(percentile(values, 99))
        counts = {}
        for m in done:
            counts[m["executionId"]] = counts.get(m["executionId"], 0) + 1
        udp_ms = [1000.0 * (m["t_mono"] - sent[m["executionId"]]) for m in done
                  if m["executionId"] in sent]
        poll_ms = [1000.0 * (m["t_mono"] - answered_404[m["executionId"]]) for m in done
                   if m["executionId"] in poll_ids and m["executionId"] in answered_404]
        out.update(finished=len(done), duplicates=sum(c - 1 for c in counts.values()),
                   udp_n=len(udp_ms), udp_p50_ms=rnd(percentile(udp_ms, 50)),
                   udp_p99_ms=rnd(percentile(udp_ms, 99)), udp_max_ms=rnd(max(udp_ms, default=None)),
                   poll_n=len(poll_ms), poll_p50_ms=rnd(percentile(poll_ms, 50)),
                   poll_p99_ms=rnd(percentile(poll_ms, 99)),
                   poll_max_ms=rnd(max(poll_ms, default=None)))
        assert butler.stop() == 0
        client.close()
    broker.stop()
    out["load_end"] = round(os.getloadavg()[0], 2)
    report(out)


def rnd(value):
    return None if value is None else round(value, 1)


def report(r):
    a_inc = r["a_rss_after_kb"] - r["a_rss_idle_kb"]
    b_inc = r["b_rss_following_kb"] - r["b_rss_idle_kb"]
    follow_kb = b_inc - a_inc
    follow_cpu = r["b_butler_cpu_pct"] - r["a_butler_cpu_pct"]
    r.update(a_rss_increment_kb=a_inc, b_rss_increment_kb=b_inc, follow_rss_kb=follow_kb,
             follow_cpu_pct=round(follow_cpu, 2))
    print(f"Following {r['runs']} runs at poll_s {r['poll_s']} (log level info), "
          f"{r['window_s']:.0f} s windows; 1-min load {r['load_start']} at the start, "
          f"{r['load_end']} at the end")
    print("| | Butler A: starts, no follow | Butler B: starts + follow | follow's own (B - A) "
          "| target | met |")
    print("|---|---:|---:|---:|---|---|")
    print(f"| RssAnon idle | {r['a_rss_idle_kb']} kB | {r['b_rss_idle_kb']} kB | | | |")
    print(f"| RssAnon after the starts (B: while following) | {r['a_rss_after_kb']} kB | "
          f"{r['b_rss_following_kb']} kB (peak {r['b_rss_peak_kb']}) | | | |")
    print(f"| increment over idle | {a_inc} kB | {b_inc} kB | {follow_kb} kB | <= 4096 kB | "
          f"{'yes' if follow_kb <= 4096 else 'NO'} |")
    print(f"| Butler CPU, % of one core | {r['a_butler_cpu_pct']} | {r['b_butler_cpu_pct']} | "
          f"{r['follow_cpu_pct']} | <= 2 | {'yes' if r['b_butler_cpu_pct'] <= 2 else 'NO'} |")
    print(f"| simulator CPU, % of one core | {r['a_sim_cpu_pct']} | {r['b_sim_cpu_pct']} | | | |")
    print(f"| simulator requests/s | {r['a_sim_req_per_s']} | {r['b_sim_req_per_s']} | | | |")
    if r["b_sim_req_per_s"]:
        print(f"Butler CPU per QRS request while following: "
              f"{1e4 * r['b_butler_cpu_pct'] / r['b_sim_req_per_s']:.0f} us; the simulator's "
              f"{1e4 * r['b_sim_cpu_pct'] / r['b_sim_req_per_s']:.0f} us (ratio "
              f"{r['b_butler_cpu_pct'] / max(r['b_sim_cpu_pct'], 0.01):.2f})")
    print("| finished message after | n | p50 ms | p99 ms | max ms | target | met |")
    print("|---|---:|---:|---:|---:|---|---|")
    print(f"| the session's end (404, or left out of a list) | {r['poll_n']} | {r['poll_p50_ms']} | "
          f"{r['poll_p99_ms']} | {r['poll_max_ms']} | p99 <= 100 ms | "
          f"{'yes' if r['poll_p99_ms'] is not None and r['poll_p99_ms'] <= 100 else 'NO'} |")
    print(f"| the UDP reload-finished datagram (sent) | {r['udp_n']} | {r['udp_p50_ms']} | "
          f"{r['udp_p99_ms']} | {r['udp_max_ms']} | p99 <= 50 ms | "
          f"{'yes' if r['udp_p99_ms'] is not None and r['udp_p99_ms'] <= 50 else 'NO'} |")
    print(f"after the 404, p50/p99 ms: Butler asks for the result "
          f"{r['leg_turnaround_p50_ms']}/{r['leg_turnaround_p99_ms']}, the simulator answers it "
          f"{r['leg_sim_result_p50_ms']}/{r['leg_sim_result_p99_ms']}, then the message arrives "
          f"{r['leg_publish_p50_ms']}/{r['leg_publish_p99_ms']}")
    print(f"sessions polled in B's window: {r['b_sessions_polled_in_window']} "
          f"({r['b_list_calls_in_window']} list calls, {r['b_ids_per_list_call']} ids each); "
          f"finished messages {r['finished']} for {r['runs']} runs, duplicates {r['duplicates']}")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
