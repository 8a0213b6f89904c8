"""The status page (contract 9.4, issue 30): GET /v4/status and its recent
lists, fed by what Butler publishes, each answer validated against
docs/api/openapi.json; and the page itself in a real headless Chromium. The
real binary, a real broker, the QRS simulator and the log-appender emulator;
every wait polls with a deadline."""
import json
import os
import shutil
import signal
import urllib.error
import urllib.request

import pytest

from conftest import BUTLER_BINARY, ROOT, TASK_SALES, Butler, wait_until
from test_events import Udp, datagram, guid
from test_http_api import OPENAPI, OPENAPI_DOC, validate

TOKEN = "status-page-token-1"
XSS_NAME = "<img src=x onerror=alert(1)>"


@pytest.fixture
def start_butler(workdir, broker):
    started = []

    def make(http_yaml=(), **kwargs):
        b = Butler(workdir, broker, udp=True, http_yaml=list(http_yaml), **kwargs)
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        # A clean stop (exit 0; under ASan, LeakSanitizer's verdict); None: the test killed it.
        code = b.stop()
        assert code in (0, None), f"butler exit code {code}\n{b.log()[-3000:]}"


def get(butler, path, token=None):
    request = urllib.request.Request(f"http://127.0.0.1:{butler.http_port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.status, dict(r.headers), r.read()


def status(butler, token=None):
    code, headers, body = get(butler, "/v4/status", token)
    assert code == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    value = json.loads(body)
    declared = OPENAPI.response("GET", "/v4/status", 200)
    validate(value, declared["content"]["application/json"]["schema"], "GET /v4/status",
             document=OPENAPI_DOC)
    return value


def wait_status(butler, predicate, what, token=None, timeout=10.0):
    found = []

    def check():
        value = status(butler, token)
        if predicate(value):
            found.append(value)
            return True
        return False

    wait_until(check, timeout, interval=0.1, message=what)
    return found[-1]


def test_status_shows_task_results_and_failed_reloads(start_butler, qrs, client):
    butler = start_butler(qrs=qrs)
    first = status(butler)
    assert first["broker"]["state"] == "connected" and first["broker"]["since"]
    assert first["qrs"]["state"] in ("unknown", "ok")
    assert first["recent"] == {"taskResults": [], "finished": [], "events": [],
                               "deadLetters": []}
    client.publish("butler/task/start", TASK_SALES)
    task_id = guid()
    Udp(butler.udp_port).send(datagram("butler-v15", "task-failed", task_id=task_id,
                                       task_name="Nightly Finance"))
    value = wait_status(butler, lambda v: v["recent"]["taskResults"] and v["recent"]["events"],
                        "a task result and an event on /v4/status")
    result = value["recent"]["taskResults"][0]
    assert result["topic"] == "butler/task/result"
    assert result["payload"]["started"][0]["taskId"] == TASK_SALES
    event = value["recent"]["events"][0]
    assert event["topic"].startswith(f"butler/events/task/failed/{task_id}")
    assert event["payload"]["taskName"] == "Nightly Finance"
    assert value["qrs"]["state"] == "ok" and value["qrs"]["lastOkAt"]
    assert value["qrsUrl"].startswith("https://localhost:")


def test_recent_lists_hold_the_newest_fifty(start_butler):
    butler = start_butler()
    udp = Udp(butler.udp_port)
    ids = [guid() for _ in range(60)]
    for task_id in ids:
        udp.send(datagram("butler-v15", "task-failed", task_id=task_id))
    value = wait_status(butler, lambda v: v["recent"]["events"] and
                        v["recent"]["events"][0]["payload"]["taskId"] == ids[-1] and
                        len(v["recent"]["events"]) == 50, "the 60th event")
    # Newest first, the ten oldest gone (UDP keeps their order on loopback).
    assert [e["payload"]["taskId"] for e in value["recent"]["events"]] == ids[:-51:-1]


def test_status_needs_a_token_and_masks_secrets(start_butler):
    butler = start_butler(http_yaml=[f"tokens: [{TOKEN}]"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        get(butler, "/v4/status")
    assert refused.value.code == 401
    value = status(butler, TOKEN)
    assert TOKEN not in json.dumps(value)
    # As --check-config prints it, as JSON: typed values, secrets masked.
    config = value["config"]
    assert config["http"]["tokens"] == ["***"]
    assert config["http"]["enable"] is True and config["mqtt"]["topic_root"] == "butler"
    assert config["mqtt"]["port"] == butler.broker.port and config["mqtt"]["password"] == ""


# ------------------------------------------------------------------ the page


def test_page_files_and_headers(start_butler):
    butler = start_butler(http_yaml=[f"tokens: [{TOKEN}]"])
    total = 0
    for path, media in (("/", "text/html"), ("/status.css", "text/css"),
                        ("/status.js", "text/javascript"), ("/favicon.svg", "image/svg+xml")):
        code, headers, body = get(butler, path)  # no token: the files hold no data
        assert code == 200 and headers["Content-Type"].startswith(media)
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        total += len(body)
    assert total <= 50 * 1024, f"page + style + script weigh {total} bytes"
    _, _, html = get(butler, "/")
    # Nothing inline and nothing from elsewhere: the policy would refuse it anyway.
    assert b"<script>" not in html and b"style=" not in html and b"<style" not in html
    assert b"http://" not in html and b"https://" not in html


def test_status_page_off(start_butler):
    butler = start_butler(http_yaml=["status_page: false"])
    for path in ("/", "/status.js"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(butler, path)
        assert refused.value.code == 404


def chromium(directory):
    """Headless Chromium through chromium-driver (Debian's chromium, chromium-driver and
    python3-selenium: scripts/install-deps.sh --test); None when they are missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    if not (os.path.exists("/usr/bin/chromium") and os.path.exists("/usr/bin/chromedriver")):
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1700",
                     "--no-first-run", "--disable-extensions",
                     f"--user-data-dir={os.path.join(directory, 'chromium-profile')}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


@pytest.fixture
def browser(workdir):
    driver = chromium(workdir)
    if driver is None:
        pytest.skip("chromium, chromium-driver or python3-selenium missing "
                    "(scripts/install-deps.sh --test)")
    yield driver
    driver.quit()


def console_problems(driver):
    """Console errors and CSP violations (Chromium logs both as SEVERE or with
    'Content Security Policy'), since the last call."""
    return [entry for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" or "Content Security Policy" in entry["message"]]


def text_of(driver, element_id):
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def wait_page(driver, predicate, what, timeout=15.0):
    # One refresh is 5 s: two of them and some slack.
    wait_until(lambda: predicate(driver), timeout, interval=0.2, message=what)


def save_screenshot(driver, name):
    """The picture for the CI artefacts (build/) and, with BUTLER_UPDATE_SCREENSHOT=1,
    for the README (docs/)."""
    build = os.path.dirname(os.path.abspath(BUTLER_BINARY))
    path = os.path.join(build, name)
    height = driver.execute_script(
        "return Math.ceil(document.body.getBoundingClientRect().bottom)")
    # The viewport exactly as tall as the page (a window size would count the browser's frame).
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": max(600, min(int(height) + 16, 4000)),
                            "deviceScaleFactor": 1, "mobile": False})
    driver.save_screenshot(path)
    if os.environ.get("BUTLER_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(path, os.path.join(ROOT, "docs", name))
    return path


def test_page_in_chromium_shows_starts_and_failures_as_text(start_butler, qrs, client, browser):
    """The page loads without a console error or CSP violation; a task start over MQTT and a
    failed reload datagram both appear within the refresh; a task named like HTML shows as
    those characters and runs nothing."""
    qrs.control("PATCH", f"/_sim/tasks/{TASK_SALES}", {"name": XSS_NAME})
    butler = start_butler(qrs=qrs)
    base = f"http://127.0.0.1:{butler.http_port}"
    browser.get(base + "/")
    wait_page(browser, lambda d: text_of(d, "updated") != "never", "the first refresh")
    assert console_problems(browser) == []
    assert "connected" in text_of(browser, "health")

    client.publish("butler/task/start", TASK_SALES)
    udp = Udp(butler.udp_port)
    failed_id = guid()
    udp.send(datagram("butler-v15", "task-failed", task_id=failed_id,
                      task_name="Nightly Finance"))
    wait_page(browser, lambda d: XSS_NAME in text_of(d, "tasks") and
              "Nightly Finance" in text_of(d, "events"), "the start and the failure on the page")
    assert "task failed" in text_of(browser, "events")
    # As text: no element was made from the name, and no alert opened (selenium would
    # raise UnexpectedAlertPresentException on the next command).
    assert browser.find_elements("css selector", "#tasks img, #events img") == []
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert console_problems(browser) == []

    # A fuller page for the picture: a schedule, a success and an abort.
    body = json.dumps({"name": "Nightly sales", "cronSchedule": "0 2 * * *",
                       "timezone": "Europe/Stockholm", "qlikSenseTaskId": TASK_SALES,
                       "startupState": "started", "tags": []}).encode()
    request = urllib.request.Request(f"{base}/v4/schedules", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as r:
        assert r.status == 201
    udp.send(datagram("butler-v15", "task-success", task_name="Reload Finance"))
    udp.send(datagram("butler-v15", "task-aborted", task_name="Reload HR"))
    wait_page(browser, lambda d: "Nightly sales" in text_of(d, "schedules") and
              "Reload HR" in text_of(d, "events"), "the schedule and the newer events")
    assert console_problems(browser) == []
    save_screenshot(browser, "status-page.png")


def test_page_asks_for_the_token_once(start_butler, browser):
    butler = start_butler(http_yaml=[f"tokens: [{TOKEN}]"])
    browser.get(f"http://127.0.0.1:{butler.http_port}/")
    form_shown = "return !document.getElementById('token-form').hidden"
    wait_page(browser, lambda d: d.execute_script(form_shown), "the token prompt")
    assert browser.execute_script("return document.getElementById('content').hidden")
    field = browser.find_element("id", "token")
    field.send_keys("not-the-token")
    browser.find_element("css selector", "#token-form button").click()
    wait_page(browser, lambda d: "refused" in text_of(d, "token-error") and
              d.execute_script(form_shown), "the wrong token said plainly")
    field.send_keys(TOKEN)
    browser.find_element("css selector", "#token-form button").click()
    wait_page(browser, lambda d: not d.execute_script("return document.getElementById("
                                                      "'content').hidden"), "the data")
    assert "connected" in text_of(browser, "health")
    # Kept for the tab: a reload shows the data without asking again.
    browser.refresh()
    wait_page(browser, lambda d: text_of(d, "updated") != "never", "the data after a reload")
    assert not browser.execute_script(form_shown)
    assert browser.execute_script("return sessionStorage.length") == 1
    problems = [p for p in console_problems(browser) if "401" not in p["message"]]
    assert problems == []


def test_page_says_when_butler_stops_answering(start_butler, browser):
    butler = start_butler()
    browser.get(f"http://127.0.0.1:{butler.http_port}/")
    wait_page(browser, lambda d: text_of(d, "updated") != "never", "the first refresh")
    butler.stop(signal.SIGKILL)
    wait_page(browser, lambda d: "not answering" in text_of(d, "stale"), "the stale notice")
    # The last figures stay on the page.
    assert "connected" in text_of(browser, "health")


def test_status_lists_cloud_tenants_without_secrets(start_butler):
    secret = "webhook-secret-for-the-status-test-0123456789"
    butler = start_butler(extra_yaml=f"""qlik_cloud:
  tenants:
    - name: prod
      tenant_id: t-prod
      url: "https://prod.eu.qlikcloud.com"
      api_key: api-key-not-to-show
      webhook_secret: "{secret}"
""")
    value = status(butler)
    assert value["qlikCloud"] == [{"name": "prod", "url": "https://prod.eu.qlikcloud.com"}]
    text = json.dumps(value)
    assert secret not in text and "api-key-not-to-show" not in text
