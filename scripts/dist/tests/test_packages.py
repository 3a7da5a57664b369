"""The packages, installed as a user installs them: the .deb with dpkg
(then the installed binary serves, and its systemd units pass
`systemd-analyze verify`), the Python wheel into a fresh venv (then the
client's whole test suite and the examples run against it), and the npm
tarball into an empty project (then the README's example runs)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import REPO, VERSION, WAIT, artifact, serving

from test_binaries import end_to_end

DEB = {"amd64": "x86_64", "arm64": "aarch64", "armhf": "ARM"}


def run(args, timeout=600, **kw):
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    assert out.returncode == 0, "%s failed:\n%s%s" % (" ".join(map(str, args)), out.stdout, out.stderr)
    return out.stdout


def deb(arch: str) -> pathlib.Path:
    return artifact("ipcbus_%s-1_%s.deb" % (VERSION, arch))


@pytest.mark.parametrize("arch", sorted(DEB))
def test_each_deb_holds_the_binary_and_units(arch):
    fields = run(["dpkg-deb", "--field", str(deb(arch)), "Package", "Architecture", "Depends"])
    assert "Package: ipcbus" in fields and "Architecture: %s" % arch in fields
    files = run(["dpkg-deb", "--contents", str(deb(arch))])
    for path in ("./usr/bin/ipcbus", "./usr/lib/systemd/user/ipcbus.service",
                 "./usr/share/doc/ipcbus/examples/ipcbus-system.service", "./usr/share/doc/ipcbus/README.md"):
        assert path in files, files
    assert re.search(r"-rwxr-xr-x 0/0 +\d+ .* \./usr/bin/ipcbus\n", files), files


@pytest.fixture
def installed():
    """The amd64 .deb installed with dpkg -i (root), removed afterwards."""
    if os.geteuid() != 0:
        pytest.fail("installing the .deb needs root (CI runs as root)")
    if subprocess.run(["dpkg-query", "-W", "ipcbus"], capture_output=True).returncode == 0:
        pytest.fail("a package named ipcbus is already installed here; this test would replace it")
    run(["dpkg", "-i", str(deb("amd64"))])
    try:
        yield pathlib.Path("/usr/bin/ipcbus")
    finally:
        run(["dpkg", "--purge", "ipcbus"])


def test_the_installed_deb_serves_and_its_units_verify(installed):
    assert run([str(installed), "--version"]).strip() == "ipcbus %s" % VERSION
    with serving([str(installed)]) as served:
        end_to_end(served)
    for unit in ("/usr/lib/systemd/user/ipcbus.service", "/usr/share/doc/ipcbus/examples/ipcbus-system.service"):
        out = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
        # verify names every problem on stderr; a unit file it cannot parse
        # or a missing ExecStart binary fails it.
        assert out.returncode == 0 and "ipcbus" not in out.stderr, out.stderr


def test_the_wheel_in_a_fresh_venv_passes_the_client_suite(tmp_path):
    wheel = artifact("python/ipcbus-%s-py3-none-any.whl" % VERSION)
    assert artifact("python/ipcbus-%s.tar.gz" % VERSION).exists()
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "%s[test]" % wheel])
    where = run([py, "-c", "import ipcbus; print(ipcbus.__file__)"], cwd=str(tmp_path)).strip()
    assert where.startswith(str(venv)), where
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["IPCBUS_TEST_INSTALLED"] = "1"  # the suite's conftest then imports the installed package
    out = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "clients" / "python" / "tests")],
                         capture_output=True, text=True, env=env, timeout=900, cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert re.search(r"\d+ passed", out.stdout) and " failed" not in out.stdout, out.stdout[-2000:]


def readme_example() -> str:
    """The first ```js block of clients/js/README.md, as a user copies it."""
    text = (REPO / "clients" / "js" / "README.md").read_text()
    return re.search(r"```js\n(.*?)```", text, re.S).group(1)


def test_the_npm_tarball_installs_into_an_empty_project_and_the_readme_example_runs(tmp_path):
    tarball = artifact("ipcbus-%s.tgz" % VERSION)
    project = tmp_path / "app"
    project.mkdir()
    run(["npm", "init", "-y"], cwd=str(project))
    run(["npm", "install", "--no-audit", "--no-fund", str(tarball)], cwd=str(project))
    assert (project / "node_modules" / "ipcbus" / "src" / "index.js").exists()
    assert not (project / "node_modules" / "ipcbus").is_symlink()
    with serving([str(REPO / "target" / "debug" / "ipcbus")]) as served:
        # The README's example as it is, on this server's port. It ends by
        # itself (the process exits once the bus is closed).
        (project / "example.mjs").write_text(readme_example().replace("ws://127.0.0.1:9099/ws", served.url))
        env = {k: v for k, v in os.environ.items() if not k.startswith("IPCBUS_")}
        env["IPCBUS_TOKEN"] = served.token
        out = run(["node", "--experimental-websocket", "example.mjs"], cwd=str(project), env=env, timeout=WAIT)
        assert "val weather.today { temp: 21.5 }\nsynced" in out and out.endswith("{ temp: 21.5 }\n"), out


def test_cargo_install_from_the_source_tree(tmp_path):
    """`cargo install --locked --path bus/server`, as README's Install says
    (--debug and the workspace's target folder only to reuse the build
    that the test run already made)."""
    env = dict(os.environ, CARGO_TARGET_DIR=str(REPO / "target"))
    run(["cargo", "install", "--locked", "--path", str(REPO / "bus" / "server"), "--root", str(tmp_path), "--debug"],
        env=env, cwd=str(REPO))
    exe = tmp_path / "bin" / "ipcbus"
    assert run([str(exe), "--version"]).strip() == "ipcbus %s" % VERSION
    with serving([str(exe)]) as served:
        end_to_end(served)
