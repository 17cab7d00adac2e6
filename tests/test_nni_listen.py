"""``vs-plugin tune`` keeps NNI's manager (web UI and REST API, no login) on 127.0.0.1, checked on
the real NNI manager: the kernel's socket table and a connection from a non-loopback address."""

import socket
import subprocess
from pathlib import Path

import pytest

nni_node = pytest.importorskip("nni_node")

from vs_plugin.cli.main import main  # noqa: E402
from vs_plugin.errors import VSPluginError  # noqa: E402
from vs_plugin.integrations.nni import experiment as experiment_module  # noqa: E402
from vs_plugin.integrations.nni.loopback import is_loopback, listening_addresses  # noqa: E402

from test_nni_tune import experiment, free_port  # noqa: E402


def node_starts() -> bool:
    node = Path(nni_node.__path__[0]) / "node"
    try:
        return subprocess.run([str(node), "--version"], capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not node_starts(), reason="NNI's bundled Node.js cannot start on this machine")


def other_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (from the routing of a UDP socket and the host name)."""
    found = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(info[4][0])
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent
            found.add(probe.getsockname()[0])
        except OSError:
            pass
    return sorted(a for a in found if not a.startswith("127.") and a != "0.0.0.0")


def reachable(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((address, port)) == 0


def run_and_probe(tmp_path, monkeypatch, *extra):
    """Run a one-trial experiment; while the manager runs, record where it listens."""
    seen = {}
    original = experiment_module._listening_line

    def probe(experiment_id, port, listen_all):
        seen["addresses"] = listening_addresses(port)
        seen["from_outside"] = {a: reachable(a, port) for a in other_addresses()}
        seen["loopback"] = reachable("127.0.0.1", port)
        seen["line"] = original(experiment_id, port, listen_all)
        return seen["line"]

    monkeypatch.setattr(experiment_module, "_listening_line", probe)
    path = experiment(tmp_path, "python -c 'import sys; sys.exit(3)'", max_trials=1)
    port = free_port()
    args = ["tune", "--config", str(path), "--port", str(port), "--work-dir", str(tmp_path / "nni"), "--timeout", "120", *extra]
    assert main(args) == 2  # the trial fails on purpose: only the manager matters here
    return seen, port


def test_the_manager_listens_on_loopback_only(tmp_path, monkeypatch, capsys):
    seen, port = run_and_probe(tmp_path, monkeypatch)
    assert seen["addresses"] and all(is_loopback(a) for a in seen["addresses"]), seen
    assert seen["loopback"]
    assert not any(seen["from_outside"].values()), seen["from_outside"]
    assert f"http://127.0.0.1:{port}" in seen["line"] and "this machine only" in seen["line"]
    assert "localhost" not in capsys.readouterr().out


def test_listen_all_is_explicit_and_warned(tmp_path, monkeypatch, capsys):
    seen, port = run_and_probe(tmp_path, monkeypatch, "--listen-all")
    assert any(not is_loopback(a) for a in seen["addresses"]), seen
    assert "no login" in capsys.readouterr().err


def test_an_exposed_manager_is_refused(monkeypatch):
    monkeypatch.setattr(experiment_module, "listening_addresses", lambda port: ["0.0.0.0"])
    with pytest.raises(VSPluginError, match="--listen-all"):
        experiment_module._listening_line("x", 8080, listen_all=False)


def test_ctrl_c_on_tune_does_not_advise_resume(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment_module, "run_experiment", interrupted)
    path = experiment(tmp_path, "python -c 'pass'", max_trials=1)
    assert main(["tune", "--config", str(path), "--port", str(free_port())]) == 130
    err = capsys.readouterr().err
    assert "--resume" not in err and "stopped" in err
