"""The documentation says what the code does: every setting of the settings table is
in the settings reference (in the built page too, when scripts/docs has built it), and
every ``maitre-serve`` / ``python -m maitre`` command line shown in README.md and the
pages of docs/ parses, with settings maitre accepts."""

from __future__ import annotations

import html
import re
import shlex
import sys
from pathlib import Path

import pytest
from helpers import maitre_only

pytestmark = maitre_only("maitre's own documentation")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BUILT = DOCS / "_build" / "html"
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]

sys.path.insert(0, str(DOCS / "_ext"))


def shown_commands():
    """``(page, argv)`` of each command line in a ```sh block of the pages."""
    found = []
    for page in PAGES:
        for block in re.findall(
            r"^```(?:sh|bash)\n(.*?)^```", page.read_text(), re.M | re.S
        ):
            for line in block.replace("\\\n", " ").splitlines():
                for part in line.split("&&"):
                    argv = shlex.split(part, comments=True)
                    if argv[:1] == ["maitre-serve"] or argv[1:3] == ["-m", "maitre"]:
                        start = 1 if argv[0] == "maitre-serve" else 3
                        found.append((page.name, argv[start:]))
    return found


COMMANDS = shown_commands()


def test_commands_found():
    pages = {page for page, _ in COMMANDS}
    assert {"README.md", "quickstart.md", "cli.md", "deployment.md"} <= pages


@pytest.mark.parametrize(
    "page, args", COMMANDS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(COMMANDS)]
)
def test_shown_command_line_parses(page, args):
    from maitre.adjustments import Adjustments

    kw, positional = Adjustments.parse_args(args)
    if kw.pop("help") or kw.pop("version", False):
        return
    kw.pop("call")
    mounts = kw.pop("mount", [])
    kw.pop("config", None)  # a file the page shows, not here to read
    if "app" in kw:
        positional.insert(0, kw.pop("app"))
    if kw.pop("paste", None) or kw.pop("check_config", False):
        assert not positional and not mounts, positional  # the ini names the app
        Adjustments(**kw)
        return
    assert len(positional) == 1 or (mounts and len(positional) <= 1), positional
    for target in positional + [m.split("=", 1)[1] for m in mounts]:
        assert re.fullmatch(r"[\w.]+:[\w.]+", target), target
    Adjustments(**kw)  # raises ValueError for a value maitre refuses


def test_settings_reference_has_every_setting():
    from maitre.adjustments import SETTINGS
    from maitre_docs import settings_markdown

    text = settings_markdown()
    for s in SETTINGS:
        assert f"| `{s.name}` |" in text
        assert f"`--{s.name.replace('_', '-')}" in text


def test_built_settings_page_has_every_setting():
    page = BUILT / "settings.html"
    if not page.exists():
        pytest.skip("the site is not built (bash scripts/docs)")
    from maitre.adjustments import SETTINGS

    text = html.unescape(page.read_text())
    missing = [s.name for s in SETTINGS if f">{s.name}<" not in text]
    assert not missing, f"{page} lacks {missing}: run bash scripts/docs again"


def test_metrics_reference_from_a_running_server():
    from maitre_docs import metrics_families, scrape_metrics

    families = {
        name: (kind, labels)
        for name, kind, _, labels in metrics_families(scrape_metrics())
    }
    assert families["maitre_requests_total"] == (
        "counter",
        ["method", "status", "worker"],
    )
    assert families["maitre_request_duration_seconds"][0] == "histogram"
    assert "maitre_worker_restarts_total" in families


def test_cli_page_has_every_option():
    from maitre.runner import HELP

    text = (DOCS / "cli.md").read_text()
    for option in re.findall(r"^    (--[a-z-]+)", HELP, re.M):
        assert f"`{option}" in text, option


def test_quick_start_paste_ini_loads(tmp_path):
    pytest.importorskip("paste.deploy")
    import maitre
    from paste.deploy import loadserver

    (ini,) = re.findall(
        r"^```ini\n(.*?)^```", (DOCS / "quickstart.md").read_text(), re.M | re.S
    )
    path = tmp_path / "app.ini"
    path.write_text(ini)
    runner = loadserver(f"config:{path}")
    served = {}

    def fake_serve(app, _reread=None, **kw):
        served.update(kw)

    original, maitre.serve = maitre.serve, fake_serve
    try:
        runner(object())
    finally:
        maitre.serve = original
    from maitre.adjustments import Adjustments

    assert served == {"listen": "127.0.0.1:8080", "threads": "8"}
    Adjustments(**served)


def settings_of(argv):
    """The Adjustments of a ``maitre-serve`` command line (its app aside)."""
    from maitre.adjustments import Adjustments

    assert argv[0] == "maitre-serve", argv
    kw, positional = Adjustments.parse_args(argv[1:])
    for name in ("help", "version", "call", "mount", "config"):
        kw.pop(name, None)
    assert len(positional) == 1 and re.fullmatch(r"[\w.]+:[\w.]+", positional[0])
    return Adjustments(**kw)


def test_kubernetes_deployment_agrees_with_its_settings():
    """No cluster runs here: the Deployment of docs/deployment.md is checked against
    the settings its command gives."""
    yaml = pytest.importorskip("yaml")
    page = (DOCS / "deployment.md").read_text()
    blocks = re.findall(r"^```yaml\n(.*?)^```", page, re.M | re.S)
    (deployment,) = [
        doc
        for doc in map(yaml.safe_load, blocks)
        if isinstance(doc, dict) and doc.get("kind") == "Deployment"
    ]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    settings = settings_of(container["command"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert settings.metrics_listen is not None
    assert int(settings.metrics_listen.rsplit(":", 1)[1]) == ports["metrics"]
    assert {sockaddr[1] for *_, sockaddr in settings.listen} == {ports["http"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == ports["metrics"]
    # The kubelet's SIGKILL comes after the grace period: the delay and the drain
    # both fit in it, and no preStop hook is needed.
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= settings.shutdown_delay + settings.shutdown_timeout + 1
    assert "lifecycle" not in container
    ready = container["readinessProbe"]
    assert ready["periodSeconds"] * ready.get("failureThreshold", 3) < (
        settings.shutdown_delay
    )


def test_haproxy_instances_match_the_configuration():
    """The maitre command of docs/deployment.md's HAProxy section listens where
    docs/haproxy.cfg sends requests and health checks, and trusts the PROXY header."""
    page = (DOCS / "deployment.md").read_text()
    config = (DOCS / "haproxy.cfg").read_text()
    start = page.index("### HAProxy\n")
    end = re.compile(r"^##", re.M).search(page, start + 1).start()  # next heading
    section = page[start:end]
    (command,) = re.findall(r"^```sh\n(.*?)^```", section, re.M | re.S)
    settings = settings_of(shlex.split(command.replace("\\\n", " ")))
    host, port = settings.listen[0][3][:2]
    metrics_port = settings.metrics_listen.rsplit(":", 1)[1]
    assert f"server app1 {host}:{port} check port {metrics_port}\n" in config
    assert "option httpchk GET /readyz\n" in config
    assert "send-proxy-v2" in config and settings.proxy_protocol == "v2"
    assert settings.shutdown_delay >= 1
