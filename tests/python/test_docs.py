"""The documentation site: it builds with warnings as errors, its internal links resolve, the benchmark charts
are drawn from bench/results, and (with Debian's chromium installed) the start page loads in a headless
browser with its chart. Skipped when Sphinx or myst-parser is not installed (scripts/docs.sh installs them)."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")
pytest.importorskip("matplotlib")


def _check_links_module():
    spec = importlib.util.spec_from_file_location("check_links", ROOT / "scripts" / "check_links.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs") / "html"
    build = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                            str(ROOT / "docs"), str(out)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    return out


def test_the_site_builds_with_warnings_as_errors_and_has_every_page(site):
    for page in ("index", "api", "format", "design", "benchmarks", "cli", "getting-started/dict-list",
                 "getting-started/records", "getting-started/shared-dict", "getting-started/pool"):
        assert (site / f"{page}.html").exists(), page
    api = (site / "api.html").read_text()
    for name in ("mmstore.RecordArray.to_arrow", "mmstore.dask.read_records", "mmstore.SharedDict"):
        assert f'id="{name}"' in api, name


def test_every_internal_link_and_anchor_resolves(site):
    assert _check_links_module().check_site(site) == []


def test_the_link_checker_reports_a_broken_link_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.html").write_text('<a href="b.html#nope">x</a><a href="missing.html">y</a><img src="c.svg">')
    (tmp_path / "b.html").write_text('<h1 id="here">b</h1>')
    errors = _check_links_module().check_site(tmp_path)
    assert any("missing anchor b.html#nope" in e for e in errors)
    assert any("broken link missing.html" in e for e in errors) and any("broken link c.svg" in e for e in errors)


def test_benchmark_charts_are_drawn_from_every_known_results_file(site):
    results = {p.stem for p in (ROOT / "bench" / "results").glob("*.json")}
    bench = (site / "benchmarks.html").read_text()
    for name in results & {"bench_records", "bench_dict", "bench_shared", "bench_pool", "bench_arrow"}:
        assert f'alt="{name}"' in bench, name
        assert (site / "_images" / f"{name}.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="Debian's chromium is not installed")
def test_the_start_page_and_its_chart_load_in_headless_chromium(site):
    assert _check_links_module().check_browser(site / "index.html") == []


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="Debian's chromium is not installed")
def test_the_headless_check_reports_a_chart_that_does_not_load(tmp_path, site):
    (tmp_path / "ok.svg").write_bytes((site / "_images" / "bench_records.svg").read_bytes())
    page = tmp_path / "index.html"
    page.write_text('<html><head><title>t</title></head><body><img src="ok.svg"><img src="gone.svg"></body></html>')
    errors = _check_links_module().check_browser(page)
    assert len(errors) == 1 and "gone.svg" in errors[0]
