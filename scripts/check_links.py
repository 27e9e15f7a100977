"""Checks a built HTML site: every internal link, image and script points at an existing file (and anchor).

    python scripts/check_links.py build/docs/html               internal links and anchors
    python scripts/check_links.py --browser build/docs/html/index.html
        renders the page in headless Chromium (Debian's `chromium`) and fails if an image (the benchmark
        charts) or the page itself did not load.

Exit status 1 with one line per broken link.
"""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "name" in a:
            self.ids.add(a["name"])
        for key in ("href", "src"):
            if a.get(key) and not (tag == "link" and a.get("rel") in ("canonical",)):
                self.refs.append(a[key])


def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return p


def check_site(root: Path) -> list[str]:
    pages = {p: _parse(p) for p in root.rglob("*.html")}
    broken = []
    for page, parsed in pages.items():
        for ref in parsed.refs:
            u = urlsplit(ref)
            if u.scheme or ref.startswith(("//", "mailto:", "data:", "javascript:")):
                continue
            target = page if not u.path else (page.parent / unquote(u.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(root)}: broken link {ref}")
                continue
            if u.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(u.fragment) not in ids:
                    broken.append(f"{page.relative_to(root)}: missing anchor {ref}")
    if not pages:
        broken.append(f"{root}: no HTML pages")
    return broken


_PROBE = """
<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);
  document.title = 'CHECK ' + JSON.stringify({images: imgs.length, broken: bad});
});
</script>
"""


def check_browser(page: Path) -> list[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        return ["headless check: no chromium on PATH (apt-get install chromium)"]
    # a copy of the page with a probe that reports unloaded images in the title, next to the original
    probe = page.with_name("_browser_check.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory() as profile:
            out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                                  "--virtual-time-budget=5000", "--dump-dom", probe.resolve().as_uri()],
                                 capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    if out.returncode != 0:
        return [f"headless check: chromium exited {out.returncode}: {out.stderr.strip().splitlines()[-1:]}"]
    import json
    import re

    m = re.search(r"<title>CHECK (.*?)</title>", out.stdout)
    if not m:
        return ["headless check: the page did not finish loading"]
    result = json.loads(html.unescape(m.group(1)))
    errors = [f"headless check: image did not load: {src}" for src in result["broken"]]
    if result["images"] == 0:
        errors.append("headless check: the start page shows no chart")
    return errors


def main(argv: list[str]) -> int:
    if argv[:1] == ["--browser"]:
        errors = check_browser(Path(argv[1]))
    else:
        errors = check_site(Path(argv[0]))
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
