#!/usr/bin/env python3
"""Drives Debian's Chromium, headless, through the Chrome DevTools Protocol
to look at Berth's dashboard as a person's browser would: used by
tests/tests/dashboard.rs.

  dashboard_browser.py URL CA_FILE SCREENSHOT

URL is what `berth dashboard` prints (it signs in with ?token=). The
server's certificate is first verified against the cluster CA (Python's
ssl); Chromium is then told to trust exactly that certificate's key
(--ignore-certificate-errors-spki-list), nothing else. Protocol, one JSON object per line on stdout:
  1. after the page has loaded: {"url", "text", "errors", "cookie_http_only"}
  2. it then reads a line from stdin: text to wait for. It waits up to 40 s
     for it to appear WITHOUT reloading (the page's own live refresh must
     bring it), writes SCREENSHOT, and prints {"found", "text", "errors"}.
"errors" are console errors, uncaught exceptions, and failed loads, but
for ERR_NETWORK_CHANGED (counted in "network_changed", see below).
"""
import atexit, base64, hashlib, json, os, shutil, socket, ssl, subprocess, sys, tempfile, time
import urllib.parse, urllib.request

import websocket

url, ca_file, shot = sys.argv[1:4]


def tlv(der, at):
    """(start of value, end of value, end of the whole TLV) at `at`."""
    n = der[at + 1]
    if n < 0x80:
        start, length = at + 2, n
    else:
        k = n & 0x7F
        start, length = at + 2 + k, int.from_bytes(der[at + 2:at + 2 + k], "big")
    return start, start + length, start + length


def spki_pin(host, port, server_name):
    """The base64 SHA-256 of the verified server certificate's public key."""
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((host, port), 10) as sock:
        with ctx.wrap_socket(sock, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    _, _, _ = tlv(der, 0)
    tbs, _, _ = tlv(der, 0)              # Certificate → TBSCertificate
    at, _, _ = tlv(der, tbs)             # into TBSCertificate
    if der[at] == 0xA0:                  # [0] version
        at = tlv(der, at)[2]
    for _ in range(5):                   # serial, signature, issuer, validity, subject
        at = tlv(der, at)[2]
    end = tlv(der, at)[2]                # subjectPublicKeyInfo
    return base64.b64encode(hashlib.sha256(der[at:end]).digest()).decode()


parts = urllib.parse.urlsplit(url)
spki = spki_pin(parts.hostname, parts.port, os.environ.get("BERTH_SERVER_NAME", parts.hostname))
profile = tempfile.mkdtemp(prefix="berth-chromium-")
proc = subprocess.Popen(
    [
        shutil.which("chromium") or "chromium",
        "--headless=new", "--no-sandbox", "--no-zygote", "--disable-gpu",
        "--disable-dev-shm-usage", "--no-first-run", "--remote-debugging-port=0",
        f"--user-data-dir={profile}", f"--ignore-certificate-errors-spki-list={spki}",
        "--window-size=1280,1000", "about:blank",
    ],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)


@atexit.register
def stop_chromium():
    # Whatever happens here (a failed assertion upstream closes our pipes),
    # no browser outlives the script.
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    shutil.rmtree(profile, ignore_errors=True)


def devtools_port():
    path = os.path.join(profile, "DevToolsActivePort")
    deadline = time.time() + 30
    while time.time() < deadline:
        if os.path.exists(path):
            lines = open(path).read().split()
            if lines:
                return int(lines[0])
        time.sleep(0.1)
    raise SystemExit("chromium did not open its DevTools port")


port = devtools_port()
targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
page = next(t for t in targets if t["type"] == "page")
ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
next_id = 0
errors = []
events = []


# Chromium drops its connections with ERR_NETWORK_CHANGED whenever the
# host's interfaces change, and Docker adds a veth for every container the
# test starts. That is this machine's network, not the page: such lines are
# counted apart (the page's event stream reconnects by itself).
network_changed = []


def note(line):
    (network_changed if "ERR_NETWORK_CHANGED" in line else errors).append(line)


def on_event(msg):
    m = msg.get("method")
    p = msg.get("params", {})
    if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
        note("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
    elif m == "Runtime.exceptionThrown":
        d = p.get("exceptionDetails", {})
        note("exception: " + d.get("text", "") + " " + str(d.get("exception", {}).get("description", "")))
    elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
        e = p["entry"]
        note(f"log: {e.get('text', '')} {e.get('url', '')}")
    elif m == "Network.loadingFailed" and not p.get("canceled"):
        note(f"load failed: {p.get('errorText')} ({p.get('type')})")
    events.append(m)


def call(method, **params):
    global next_id
    next_id += 1
    ws.send(json.dumps({"id": next_id, "method": method, "params": params}))
    while True:
        msg = json.loads(ws.recv())
        if msg.get("id") == next_id:
            if "error" in msg:
                raise SystemExit(f"{method}: {msg['error']}")
            return msg.get("result", {})
        on_event(msg)


def pump(seconds):
    """Takes in events for a while."""
    ws.settimeout(0.2)
    end = time.time() + seconds
    while time.time() < end:
        try:
            on_event(json.loads(ws.recv()))
        except websocket.WebSocketTimeoutException:
            pass
    ws.settimeout(30)


def text():
    r = call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''", returnByValue=True)
    return r.get("result", {}).get("value", "")


for domain in ("Runtime", "Log", "Network", "Page"):
    call(f"{domain}.enable")
call("Page.navigate", url=url)
deadline = time.time() + 30
while "Page.loadEventFired" not in events and time.time() < deadline:
    pump(0.2)
pump(1.0)
cookies = call("Network.getCookies").get("cookies", [])
token_cookie = [c for c in cookies if c["name"] == "berth_token"]
here = call("Runtime.evaluate", expression="location.href", returnByValue=True)["result"]["value"]
print(json.dumps({
    "url": here,
    "text": text(),
    "errors": errors,
    "cookie_http_only": bool(token_cookie) and all(c.get("httpOnly") and c.get("secure") for c in token_cookie),
    "network_changed": len(network_changed),
}), flush=True)

wanted = sys.stdin.readline().strip()
found = False
deadline = time.time() + 40
while time.time() < deadline:
    if wanted in text():
        found = True
        break
    pump(0.5)
pump(0.5)
png = call("Page.captureScreenshot", format="png")["data"]
with open(shot, "wb") as f:
    f.write(base64.b64decode(png))
print(json.dumps({"found": found, "text": text(), "errors": errors, "network_changed": len(network_changed)}), flush=True)
ws.close()
