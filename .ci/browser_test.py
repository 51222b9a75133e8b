"""Browser tests of the operations console (/ui), run by .ci/browser.sh.

A real service on its embedded SQLite default in a temporary directory, with tenants left one
migration behind, driven in the distribution's headless Chromium through its chromedriver
(Selenium, no download at run time). As an admin it signs in with the keyboard, reads the
fleet view (counts, version bars, search), opens a tenant (history, drift check, upgrade and
repair dry runs), plans a fleet upgrade (dry-run job), confirms the real one from the plan's
count, and watches that job reach `succeeded` live (then cancels a second one held mid-way): one tenant's file is held locked, so the
page sees the job running and the outcomes arrive over the event stream after the lock is let
go. Then a viewer signs in and finds no action anywhere, the server refuses the viewer's
write anyway, and once the viewer's token is retired on the server the page signs out. Along the way: the token is in no storage or cookie, a reload signs out, every
control has a label, and the browser logged no error (a Content-Security-Policy violation
would be one).

With --screenshots DIR, it saves each view at 1280x800 there.

Exit status 0 when every check passed; on a failure it prints the check, the server's log
tail, saves failure.png into the work directory, and keeps that directory.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 30  # seconds any single condition may take on a loaded 2-core machine
BEHIND = [f"salon_{c}" for c in "abcdefgh"]  # created one version behind
CURRENT = ["spa_north", "spa_south", "barber_one"]  # created at the newest version


# The newest tenant migration the binary ships (its built-in set is migrations/).
LATEST = max(int(os.path.basename(p)[:4]) for p in glob.glob(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "migrations", "tenant", "sqlite", "*.sql")))


class Failed(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failed(what)
    print(f"ok - {what}", flush=True)


class TestService:
    """The tenant-migrator service on a free loopback port, in its own directory."""

    def __init__(self, binary: str, work: str) -> None:
        self.binary = binary
        self.work = work
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        drop = {
            "DATABASE_URL", "PUBLIC_DATABASE_URL", "TENANT_URL_TEMPLATE", "TENANT_SERVERS",
            "MIGRATIONS_DIR", "REDIS_URL", "CATALOG_SCHEMA", "METRICS_TOKEN", "CORS_ORIGINS",
            "JWT_ISSUER", "JWT_AUDIENCE", "JWT_TTL", "DRAINING_SERVERS",
        }
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env.update(
            DATA_DIR=os.path.join(work, "data"),
            SECRET_KEY=secrets.token_hex(32),
            BIND_ADDR=f"127.0.0.1:{self.port}",
            RUST_LOG=os.environ.get("RUST_LOG", "info"),
        )
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(work, "server.log")

    def cli(self, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            [self.binary, *args], cwd=self.work, env=self.env, input=stdin,
            capture_output=True, text=True, timeout=300,
        )
        if out.returncode != 0:
            raise Failed(f"`{' '.join(args)}` exited {out.returncode}: {out.stderr[-2000:]}")
        return out.stdout

    def start(self) -> None:
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [self.binary, "serve"], cwd=self.work, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failed(f"the service exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)  # polling the service's readiness, not synchronising test steps
        raise Failed("the service did not become ready in 60 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def request(self, method: str, path: str, token: str | None = None, body: object = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def token(self, email: str, password: str) -> str:
        status, body = self.request("POST", "/auth/login", body={"email": email, "password": password})
        if status != 200:
            raise Failed(f"login of {email}: {status} {body}")
        return body["access_token"]

    def tail(self, lines: int = 60) -> str:
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


class Console:
    def __init__(self, base: str, shots: str | None) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1280,800", "--force-device-scale-factor=1", "--lang=en-US",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
        # An explicit driver: Selenium Manager would otherwise try to download one.
        self.d = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        self.base = base
        self.shots = shots

    def wait(self, cond, what: str, timeout: float = WAIT):
        try:
            # The page re-renders parts as events arrive: an element found a moment ago may be
            # gone, which only means "look again".
            return WebDriverWait(self.d, timeout, ignored_exceptions=[StaleElementReferenceException]).until(cond)
        except TimeoutException:
            raise Failed(f"timed out waiting for {what}") from None

    def text(self, css: str) -> str:
        return self.d.find_element(By.CSS_SELECTOR, css).text

    def visible(self, css: str):
        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, css)), css)

    def click(self, css: str) -> None:
        self.wait(EC.element_to_be_clickable((By.CSS_SELECTOR, css)), f"{css} to be clickable").click()

    def text_in(self, css: str, text: str, timeout: float = WAIT) -> None:
        self.wait(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text), f"{text!r} in {css}", timeout)

    def go(self, hash_: str) -> None:
        self.d.execute_script("location.hash = arguments[0]", hash_)

    def shot(self, name: str) -> None:
        if not self.shots:
            return
        os.makedirs(self.shots, exist_ok=True)
        # Let the focus ring and the last paint settle before the picture.
        self.d.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
        path = os.path.join(self.shots, f"{name}.png")
        self.d.save_screenshot(path)
        size = self.d.execute_script("return [window.innerWidth, window.innerHeight]")
        check(size == [1280, 800], f"screenshot {name}.png is 1280x800 (viewport {size})")

    def sign_in(self, email: str, password: str) -> None:
        self.d.get(f"{self.base}/ui")
        self.visible("#sign-in-form")
        email_box = self.d.find_element(By.ID, "email")
        self.wait(lambda d: d.switch_to.active_element == email_box, "the e-mail box to have focus")
        # Keyboard only: type, Tab to the password, Enter submits.
        email_box.send_keys(email)
        self.d.switch_to.active_element.send_keys(Keys.TAB)
        self.d.switch_to.active_element.send_keys(password, Keys.ENTER)
        self.text_in("#who-name", email)

    def sign_out(self) -> None:
        self.click("#sign-out")
        self.visible("#sign-in-form")

    def browser_errors(self) -> list[str]:
        return [e["message"] for e in self.d.get_log("browser") if e["level"] == "SEVERE"]

    def unlabelled_controls(self) -> list[str]:
        return self.d.execute_script("""
            const out = [];
            for (const el of document.querySelectorAll('input, select, textarea, button')) {
              if (el.closest('[hidden]') || el.type === 'hidden') continue;
              const named = el.labels && el.labels.length > 0 || el.getAttribute('aria-label')
                || el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent.trim());
              if (!named) out.push(el.outerHTML.slice(0, 120));
            }
            return out;""")

    def quit(self) -> None:
        self.d.quit()


def tenant_file(data_dir: str, schema: str) -> str:
    found = [p for p in glob.glob(os.path.join(data_dir, "**", f"*{schema}*"), recursive=True)
             if os.path.isfile(p) and not p.endswith(("-wal", "-shm", "-journal"))]
    if len(found) != 1:
        raise Failed(f"expected one SQLite file for {schema} under {data_dir}, found {found}")
    return found[0]


ADMIN, VIEWER = "console-admin@example.com", "console-viewer@example.com"


def run(svc: TestService, ui: Console, passwords: dict[str, str]) -> None:
    admin, viewer = ADMIN, VIEWER
    admin_pw, viewer_pw = passwords[ADMIN], passwords[VIEWER]

    # --- as an admin -------------------------------------------------------------------------
    ui.sign_in(admin, admin_pw)
    check(ui.d.execute_script("return localStorage.length + sessionStorage.length") == 0
          and ui.d.execute_script("return document.cookie") == "",
          "the token is in no storage and no cookie")
    ui.visible("ul.counts")
    total = len(BEHIND) + len(CURRENT)
    ui.text_in("ul.counts li:first-child", str(total))
    check(f"{total}\ntenants" in ui.text("ul.counts li:first-child") or str(total) in ui.text("ul.counts li:first-child"),
          f"the fleet view counts {total} tenants")
    bars = ui.d.find_elements(By.CSS_SELECTOR, "ul.bars li")
    check(len(bars) == 2, f"a bar per version: 2 (got {len(bars)})")
    bar_text = [b.text for b in bars]
    check(any("(newest)" in t and t.endswith(str(len(CURRENT))) for t in bar_text)
          and any(t.endswith(str(len(BEHIND))) and "(newest)" not in t for t in bar_text),
          f"the bars count {len(BEHIND)} behind and {len(CURRENT)} at the newest version: {bar_text}")
    attention = ui.d.find_elements(By.CSS_SELECTOR, "#attention-title ~ table tbody tr")
    check(len(attention) == len(BEHIND), f"{len(BEHIND)} tenants need attention (behind)")
    ui.text_in("#tenant-count", f"of {total}")
    ui.shot("fleet")

    search = ui.d.find_element(By.ID, "tenant-search")
    search.send_keys("spa_")
    ui.text_in("#tenant-count", "of 2")
    names = [e.text for e in ui.d.find_elements(By.CSS_SELECTOR, "#tenant-list tbody th")]
    check(sorted(names) == ["spa_north", "spa_south"], f"search 'spa_' finds the two spa tenants: {names}")
    search.send_keys(Keys.BACKSPACE * 4, "SPA-")
    ui.wait(lambda d: d.find_element(By.ID, "tenant-search").get_attribute("aria-invalid") == "true",
            "a search that cannot start a name to be flagged")
    check("Only a-z" in ui.text("#tenant-search-help"), "the bad search is explained beside the box")
    check(ui.unlabelled_controls() == [], f"every control of the fleet view has a label: {ui.unlabelled_controls()}")

    # Tenant view: history, drift, an upgrade and a repair dry run.
    ui.go("#/tenants/salon_a")
    ui.text_in("#view h1", "salon_a")
    history = ui.d.find_elements(By.CSS_SELECTOR, "#history-title ~ table tbody tr")
    check(len(history) >= 1, f"salon_a shows its history ({len(history)} rows)")
    pending = ui.d.find_element(By.XPATH, "//dt[.='Pending']/following-sibling::dd[1]").text
    check(pending == f"v{LATEST}", f"salon_a shows its pending migration: {pending!r}")
    ui.click("#check-drift")
    ui.text_in("#drift", "No drift")
    ui.click("#plan-upgrade")
    ui.text_in("#tenant-outcome", "Upgrade plan (dry run")
    check("planned" in ui.text("#tenant-outcome"), "the tenant upgrade plan says planned")
    ui.click("#plan-repair")
    ui.text_in("#tenant-outcome", "Nothing to repair")
    ui.click("#plan-upgrade")
    ui.text_in("#tenant-outcome", "Upgrade plan (dry run")
    check("null" not in ui.text("#tenant-outcome") and "false" not in ui.text("#tenant-outcome"),
          "the plan prints no stray null or false")
    check(ui.unlabelled_controls() == [], "every control of the tenant view has a label")
    ui.shot("tenant")

    # Jobs: dry run first, its plan, then the real upgrade behind a confirmation with its count.
    ui.go("#/jobs")
    ui.click("#plan-fleet")
    ui.text_in("#job-state", "succeeded")
    ui.text_in("#plan-count", f"{len(BEHIND)} tenant(s) would be migrated")
    planned_rows = ui.d.find_elements(By.CSS_SELECTOR, "#outcomes-title ~ table tbody tr")
    check(len(planned_rows) == len(BEHIND), f"the plan lists the {len(BEHIND)} tenants it would touch")
    ui.shot("job-plan")

    # Hold salon_h's file locked, so the real job is seen running before it can finish.
    lock = sqlite3.connect(tenant_file(svc.env["DATA_DIR"], "salon_h"), isolation_level=None, timeout=30)
    lock.execute("BEGIN IMMEDIATE")
    try:
        ui.click("#run-fleet")
        dialog = ui.visible("#confirm")
        check(f"Upgrade {len(BEHIND)} tenant(s)?" in ui.text("#confirm-title"),
              f"the confirmation names the count: {ui.text('#confirm-title')!r}")
        check(ui.d.switch_to.active_element == ui.d.find_element(By.ID, "confirm-cancel"),
              "the confirmation focuses Cancel first")
        ui.click("#confirm-ok")
        ui.wait(lambda d: not dialog.is_displayed(), "the confirmation to close")
        ui.wait(lambda d: "dry run" not in d.find_element(By.ID, "job-summary-title").text
                and d.find_element(By.ID, "cancel-job").is_displayed(), "the real job's page with a cancel button")
        job_url = ui.d.current_url
        ui.text_in("#job-state", "running")
        ui.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#outcomes-title ~ table tbody tr")) >= 1,
                "the first outcomes to arrive while salon_h is locked")
        arrived = len(ui.d.find_elements(By.CSS_SELECTOR, "#outcomes-title ~ table tbody tr"))
        check(arrived < len(BEHIND) and "succeeded" not in ui.text("#job-state"),
              f"the job is running with {arrived} of {len(BEHIND)} outcomes while salon_h is held")
        bar = ui.d.find_element(By.ID, "job-progress")
        value, most = int(bar.get_attribute("value") or 0), int(bar.get_attribute("max") or 0)
        check(0 < value < most, f"the progress bar stands between: {value} of {most}")
        ui.shot("job-live")
        ui.d.execute_script("window.__same_page = true")
    finally:
        lock.rollback()
        lock.close()
    ui.text_in("#job-state", "succeeded", timeout=120)
    check(ui.d.current_url == job_url and ui.d.execute_script("return window.__same_page === true"),
          "the job reached succeeded live, on the same page (no reload)")
    rows = ui.d.find_elements(By.CSS_SELECTOR, "#outcomes-title ~ table tbody tr")
    check(len(rows) == len(BEHIND) and all("migrated" in r.text for r in rows),
          f"all {len(BEHIND)} outcomes say migrated")
    value = ui.d.find_element(By.ID, "job-progress").get_attribute("value")
    check(value == ui.d.find_element(By.ID, "job-progress").get_attribute("max"), "the progress bar is full")
    check("cancel-job" not in ui.d.page_source, "a finished job has no cancel button")
    ui.shot("job")

    ui.go("#/jobs")
    ui.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#job-list tbody tr")) == 2, "two jobs listed")
    ui.shot("jobs")

    ui.go("#/fleet")
    ui.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "ul.bars li")) == 1, "one version bar after the upgrade")
    check("Nothing" in ui.text("#attention-title ~ p"), "nothing needs attention after the upgrade")

    # Cancel: four tenants fall behind, all four held locked; the job's three workers wait on
    # three of them, the cancel lands, and the fourth is never started.
    late = [f"late_{c}" for c in "abcd"]
    svc.cli("create", *late, "--target", str(LATEST - 1))
    locks = []
    try:
        for name in late:
            con = sqlite3.connect(tenant_file(svc.env["DATA_DIR"], name), isolation_level=None, timeout=30)
            con.execute("BEGIN IMMEDIATE")
            locks.append(con)
        ui.go("#/jobs")
        ui.click("#plan-fleet")
        ui.text_in("#plan-count", f"{len(late)} tenant(s) would be migrated")
        ui.click("#run-fleet")
        ui.visible("#confirm")
        ui.click("#confirm-ok")
        ui.wait(lambda d: "dry run" not in d.find_element(By.ID, "job-summary-title").text, "the second real job's page")
        ui.text_in("#job-state", "running")
        ui.click("#cancel-job")
        ui.visible("#confirm")
        check("Cancel this job?" in ui.text("#confirm-title"), "cancelling asks first")
        ui.click("#confirm-ok")
        ui.text_in("#job-state", "cancel requested")
        check(not ui.d.find_elements(By.ID, "cancel-job"), "no second cancel once it is asked")
    finally:
        for con in locks:
            con.rollback()
            con.close()
    ui.text_in("#job-state", "cancelled", timeout=120)
    ui.text_in("#job-progress-text", "not attempted")
    check(len(ui.d.find_elements(By.CSS_SELECTOR, "#outcomes-title ~ table tbody tr")) < len(late),
          "the cancelled job left a tenant not started")

    ui.go("#/audit")
    ui.text_in("#audit-list", "migrations.upgrade_all")
    check("auth.login" in ui.text("#audit-list") or "login" in ui.text("#audit-list"), "the audit view shows the sign-in")
    check(ui.unlabelled_controls() == [], "every control of the audit view has a label")
    ui.shot("audit")

    ui.d.refresh()
    ui.visible("#sign-in-form")
    check(not ui.d.find_element(By.ID, "nav").is_displayed(), "a reload forgets the token: sign-in again")
    ui.shot("sign-in")

    # --- as a viewer -------------------------------------------------------------------------
    ui.sign_in(viewer, viewer_pw)
    ui.visible("ul.counts")
    check(not ui.d.find_element(By.CSS_SELECTOR, '#nav a[data-view="audit"]').is_displayed(),
          "a viewer has no audit link")
    ui.go("#/tenants/salon_a")
    ui.text_in("#view h1", "salon_a")
    ui.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history-title ~ table tbody tr")) >= 1, "salon_a's history")
    for css in ("#plan-upgrade", "#plan-repair", "#check-drift"):
        check(not ui.d.find_elements(By.CSS_SELECTOR, css), f"a viewer sees no {css} on a tenant")
    ui.go("#/jobs")
    ui.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#job-list tbody tr")) == 4, "the jobs, for a viewer")
    check(not ui.d.find_elements(By.ID, "plan-fleet"), "a viewer sees no fleet upgrade button")
    ui.d.find_element(By.CSS_SELECTOR, "#job-list tbody tr a").click()
    ui.text_in("#job-state", "cancelled")
    check(not ui.d.find_elements(By.CSS_SELECTOR, "#job-controls button, #run-fleet"), "a viewer sees no job action")
    buttons = [b.text for b in ui.d.find_elements(By.CSS_SELECTOR, "main button") if b.is_displayed()]
    check(all(b in ("Refresh", "Previous page", "Next page", "Newer", "Older") for b in buttons),
          f"a viewer's buttons only read: {buttons}")
    token = svc.token(viewer, viewer_pw)
    status, _ = svc.request("POST", "/migrations/upgrade-all", token, {"dry_run": True})
    check(status == 403, f"the server refuses a viewer's upgrade anyway ({status})")
    status, _ = svc.request("POST", "/tenants/salon_a/repair?dry_run=true", token, {})
    check(status == 403, f"the server refuses a viewer's repair dry run ({status})")

    # The session ends with its token: a token retired on the server (the viewer's role is
    # changed, which retires every token issued before) signs the page out at its next call.
    admin_token = svc.token(admin, admin_pw)
    status, admins = svc.request("GET", "/admins", admin_token)
    check(status == 200, f"the admin lists accounts ({status})")
    viewer_id = next(a["id"] for a in admins if a["email"] == viewer)
    status, _ = svc.request("PATCH", f"/admins/{viewer_id}", admin_token, {"role": "operator"})
    check(status == 200, f"the viewer's role is changed ({status})")
    ui.go("#/fleet")
    ui.visible("#sign-in-form")
    check("session ended" in ui.text("#sign-in-error"),
          f"a retired token signs the page out with a reason: {ui.text('#sign-in-error')!r}")
    check(not ui.d.find_element(By.ID, "nav").is_displayed(), "nothing of the console stays after it")

    errors = [e for e in ui.browser_errors() if "401" not in e]
    check(errors == [], f"the browser logged no error (but the one 401 of the retired token): {errors}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the tenant-migrator binary")
    ap.add_argument("--screenshots", help="save each view at 1280x800 in this directory")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    shots = os.path.abspath(args.screenshots) if args.screenshots else None

    work = tempfile.mkdtemp(prefix="tenant-migrator-browser.")
    svc = TestService(binary, work)
    ui = None
    ok = False
    try:
        # Passwords go on stdin, as create-admin reads them.
        passwords = {}
        for email, role in ((ADMIN, "admin"), (VIEWER, "viewer")):
            passwords[email] = secrets.token_urlsafe(18)
            svc.cli("create-admin", email, "--role", role, stdin=passwords[email])
        svc.cli("create", *BEHIND, "--target", str(LATEST - 1))
        svc.cli("create", *CURRENT)
        svc.start()
        ui = Console(svc.base, shots)
        run(svc, ui, passwords)
        ok = True
    except Failed as e:
        print(f"not ok - {e}", file=sys.stderr)
    except Exception:  # noqa: BLE001 - any error is a failed run, with its trace
        traceback.print_exc()
    finally:
        if not ok:
            if ui:
                try:
                    ui.d.save_screenshot(os.path.join(work, "failure.png"))
                    print(f"page at the failure: {os.path.join(work, 'failure.png')}", file=sys.stderr)
                except Exception:  # noqa: BLE001
                    pass
            print("--- server log (tail) ---", file=sys.stderr)
            print(svc.tail(), file=sys.stderr)
        if ui:
            ui.quit()
        svc.stop()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)
    print("browser tests: passed" if ok else "browser tests: FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
