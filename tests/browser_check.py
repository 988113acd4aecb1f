"""Opens a page in headless Chromium (the Debian package) and reports what a reader would get:
how many images it has and how many decoded, how many scripts it holds, its console messages, the
elements matching a CSS selector, whether a text is shown, and a screenshot. Used by
test_report.py; the page is loaded through a wrapper page in the same run (an iframe read by the
wrapper's script; the page itself runs nothing).

    python tests/browser_check.py PAGE.html [SCREENSHOT.png]
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


# sandbox without allow-scripts: nothing in the page runs (an injected onerror=alert(1) would
# otherwise block headless Chromium on its dialog); allow-same-origin lets the wrapper read its DOM.
_WRAPPER = """<!DOCTYPE html><html><body><iframe id="f" sandbox="allow-same-origin" src="{src}"
 style="width:1280px;height:4000px"></iframe>
<script>
const needle = {needle};
// Polled, not event-driven: the iframe may finish before a listener exists. An image counts as
// decoded when it loaded with a size (the load event waits for every image).
function report() {{
  const d = document.getElementById('f').contentDocument;
  if (!d || d.location.href === 'about:blank' || d.readyState !== 'complete' || !d.body) {{
    setTimeout(report, 50);
    return;
  }}
  const imgs = Array.from(d.images);
  const r = {{images: imgs.length, decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
             scripts: d.scripts.length, title: d.title, matches: d.querySelectorAll({selector}).length,
             shows_text: needle ? d.body.textContent.includes(needle) : null}};
  document.body.setAttribute('data-result', JSON.stringify(r));
}}
report();
</script></body></html>"""


def _run(browser, args, timeout=120):
    # A profile of its own per run: with a shared one, a second Chromium hands its work to a first
    # one still running and exits at once.
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                               *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def check(page, screenshot=None, text=None, selector="img[src='x']"):
    """{images, decoded, scripts, title, matches (of selector), shows_text, console: [messages]};
    the screenshot is taken only of a page with no script and no element matching selector."""
    browser = chromium()
    if browser is None:
        raise RuntimeError("no chromium found")
    page = os.path.abspath(page)
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = os.path.join(tmp, "check.html")
        with open(wrapper, "w") as f:
            f.write(_WRAPPER.format(src="file://" + page, needle=json.dumps(text), selector=json.dumps(selector)))
        p = _run(browser, ["--allow-file-access-from-files", "--virtual-time-budget=15000", "--dump-dom",
                           "file://" + wrapper])
    m = re.search(r'data-result="([^"]*)"', p.stdout)
    if not m:
        raise RuntimeError(f"the page did not finish loading in Chromium: {p.stderr[-2000:]}")
    import html
    result = json.loads(html.unescape(m.group(1)))
    result["console"] = [line for line in p.stderr.splitlines() if ":CONSOLE" in line and page in line]
    if screenshot and result["scripts"] == 0 and result["matches"] == 0:  # safe to open unsandboxed
        s = _run(browser, ["--window-size=1280,4000", f"--screenshot={os.path.abspath(screenshot)}", "file://" + page])
        if not os.path.exists(screenshot):
            raise RuntimeError(f"no screenshot: {s.stderr[-2000:]}")
        # the page itself, unsandboxed this time: whatever it logs to the console
        result["console"] += [line for line in s.stderr.splitlines() if ":CONSOLE" in line]
    return result


if __name__ == "__main__":
    print(json.dumps(check(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None), indent=1))
