"""Real images under real VMs: a multi-layer Debian image with nginx, and one without a shell.

The images are built by `scripts/build_test_images.py` (a step of `scripts/setup.sh`) into
~/.cache/hypr/images/: `debian-nginx.tar` (three layers: minimal Debian, nginx and users,
a top layer with whiteouts and the index page) and `noshell.tar` (one static binary).
Nothing here reaches a network: requests to nginx are made from inside its VM.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tarfile
import time

import pytest

from tests.conftest import CACHE, ROOT

pytestmark = pytest.mark.vm

IMAGES = CACHE / "images"
DEBIAN = "hypr-test/debian-nginx"
NOSHELL = "hypr-test/noshell"


def _builder():
    """scripts/build_test_images.py as a module (for INDEX_HTML and the layer-3 whiteouts)."""
    spec = importlib.util.spec_from_file_location("build_test_images", ROOT / "scripts" / "build_test_images.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


BUILDER = _builder()


def _load(home, file_name: str, ref: str) -> str:
    path = IMAGES / file_name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/setup.sh (or .venv/bin/python scripts/build_test_images.py)")
    home.run("load", "-i", str(path), check=True)
    return ref


@pytest.fixture
def debian(hypr_home) -> str:
    return _load(hypr_home, "debian-nginx.tar", DEBIAN)


@pytest.fixture
def noshell(hypr_home) -> str:
    return _load(hypr_home, "noshell.tar", NOSHELL)


def _sh(home, image: str, script: str, *flags: str, timeout: float = 120):
    proc = home.run("run", "--rm", *flags, image, "sh", "-c", script, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout.decode()}\nstderr: {proc.stderr.decode()}"
    return proc.stdout.decode()


# --- the Debian image -------------------------------------------------------------------


def test_debian_archive_has_three_layers_and_whiteouts_on_top():
    """What the VM tests below rely on: the top layer really deletes files of layer 1."""
    path = IMAGES / "debian-nginx.tar"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/setup.sh")
    with tarfile.open(path) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == [f"{DEBIAN}:latest"]
        layers = manifest[0]["Layers"]
        assert len(layers) == 3
        config = json.load(archive.extractfile(manifest[0]["Config"]))["config"]
        with tarfile.open(fileobj=archive.extractfile(layers[0])) as bottom:
            bottom_names = set(bottom.getnames())
        with tarfile.open(fileobj=archive.extractfile(layers[2])) as top:
            top_names = set(top.getnames())
    assert {"etc/motd", "etc/update-motd.d", "etc/update-motd.d/10-uname", "etc/issue"} <= bottom_names
    assert {"etc/.wh.motd", "etc/.wh.update-motd.d", "usr/share/nginx/html/index.html"} <= top_names
    assert config["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert config["StopSignal"] == "SIGQUIT"
    assert config["ExposedPorts"] == {"80/tcp": {}}


def test_glibc_resolves_users_and_groups_by_name(hypr_home, debian):
    out = _sh(hypr_home, debian, "id appuser; ls -l /etc/passwd; ls -ld /home/appuser; ls -l /etc/shadow")
    lines = out.splitlines()
    assert lines[0] == "uid=1001(appuser) gid=1001(appgroup) groups=1001(appgroup),50(staff)"
    assert lines[1].split()[2:4] == ["root", "root"]
    assert lines[2].split()[2:4] == ["appuser", "appgroup"]
    assert lines[3].split()[2:4] == ["root", "shadow"]


def test_run_as_appuser_by_name(hypr_home, debian):
    out = _sh(hypr_home, debian, 'id; whoami; echo "$HOME"; touch "$HOME/mine" && ls -l "$HOME/mine"; '
              "cat /etc/shadow 2>&1 >/dev/null; true", "-u", "appuser")
    lines = out.splitlines()
    assert lines[0] == "uid=1001(appuser) gid=1001(appgroup) groups=1001(appgroup),50(staff)"
    assert lines[1:3] == ["appuser", "/home/appuser"]
    assert lines[3].split()[2:4] == ["appuser", "appgroup"]
    assert "Permission denied" in lines[4]


def test_whiteouts_took_effect(hypr_home, debian):
    out = _sh(hypr_home, debian, "for p in /etc/motd /etc/update-motd.d /etc/update-motd.d/10-uname "
              "/etc/nginx/sites-enabled/default /etc/issue /etc/nginx/sites-available/default; "
              'do if [ -e "$p" ]; then echo "present $p"; else echo "absent $p"; fi; done; '
              "cat /usr/share/nginx/html/index.html")
    assert out.splitlines()[:6] == [
        "absent /etc/motd",  # a file of layer 1, deleted by layer 3
        "absent /etc/update-motd.d",  # a directory of layer 1, with its contents
        "absent /etc/update-motd.d/10-uname",
        "absent /etc/nginx/sites-enabled/default",  # a symlink of layer 2
        "present /etc/issue",  # its neighbours stay
        "present /etc/nginx/sites-available/default",
    ]
    assert out.endswith(BUILDER.INDEX_HTML)  # layer 3 replaced layer 2's page


def test_nginx_is_dynamically_linked_and_runs(hypr_home, debian):
    proc = hypr_home.run("run", "--rm", debian, "nginx", "-v")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(b"nginx version: nginx/")
    out = _sh(hypr_home, debian, "/lib64/ld-linux-x86-64.so.2 --list /usr/sbin/nginx; nginx -t 2>&1")
    assert "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6" in out
    assert "libssl.so" in out
    assert "test is successful" in out


def _http_get(home, vm: str, deadline: float) -> bytes:
    """GET / from inside the VM with wget, retried until nginx listens."""
    while True:
        proc = home.run("exec", vm, "wget", "-q", "-O", "-", "http://127.0.0.1/", timeout=60)
        if proc.returncode == 0 or time.monotonic() > deadline:
            assert proc.returncode == 0, f"wget exited {proc.returncode}: {proc.stderr.decode()}"
            return proc.stdout
        time.sleep(0.5)


def test_nginx_serves_the_index_page_and_stops_on_sigquit(hypr_home, debian):
    # The image's own command, with notices logged to stderr so the shutdown says which signal came.
    hypr_home.run("run", "-d", "--name", "web", debian, "nginx", "-g", "daemon off; error_log stderr notice;",
                  check=True)
    assert _http_get(hypr_home, "web", time.monotonic() + 60) == BUILDER.INDEX_HTML.encode()
    listening = hypr_home.out("exec", "web", "cat", "/proc/net/tcp")
    assert any(line.split()[1].endswith(":0050") and line.split()[3] == "0A" for line in listening.splitlines()[1:])
    processes = hypr_home.out("exec", "web", "ps", "-o", "user=,args=", "-C", "nginx")
    owners = {args.split(":")[1].strip(): user for user, args in (line.split(None, 1) for line in processes.splitlines())}
    assert owners["master process nginx -g daemon off; error_log stderr notice;"] == "root"
    assert owners["worker process"] == "www-data"
    logs = hypr_home.out("logs", "web")
    assert '"GET / HTTP/1.1" 200' in logs  # access.log is a symlink to /dev/stdout

    t0 = time.monotonic()
    hypr_home.run("stop", "web", check=True, timeout=60)
    took = time.monotonic() - t0
    state = json.loads(hypr_home.out("inspect", "web"))[0]["State"]
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 0  # a graceful nginx exit, not SIGKILL after the grace period
    assert took < 10, f"stop took {took:.1f} s"
    logs = hypr_home.run("logs", "web", check=True)
    assert b"signal 3 (SIGQUIT) received" in logs.stderr
    assert b"gracefully shutting down" in logs.stderr


# --- the image without a shell ------------------------------------------------------------


def test_noshell_entrypoint_gets_argv_and_exits_with_its_code(hypr_home, noshell):
    proc = hypr_home.run("run", "--rm", noshell, "7")
    assert proc.returncode == 7, proc.stderr
    out = proc.stdout.decode().splitlines()
    assert out[:3] == ["argv[0]=/app/hello", "argv[1]=7", "uid=0 gid=0 euid=0"]
    assert "env:PATH=/app" in out

    proc = hypr_home.run("run", "--rm", "-u", "runner", "-w", "/tmp", "-e", "GREETING=hi", noshell, "3", "x y")
    assert proc.returncode == 3, proc.stderr
    out = proc.stdout.decode().splitlines()
    assert out[:5] == ["argv[0]=/app/hello", "argv[1]=3", "argv[2]=x y", "uid=2000 gid=2000 euid=2000", "cwd=/tmp"]
    assert {"env:GREETING=hi", "env:HOME=/home/runner"} <= set(out)


def test_noshell_missing_entrypoint_is_127(hypr_home, noshell):
    proc = hypr_home.run("run", "--rm", "--entrypoint", "/nope", noshell)
    assert proc.returncode == 127
    err = proc.stderr.decode()
    assert "/nope" in err and "no such file" in err, err
    assert err.count("\n") == 1, err  # one clear line
    assert hypr_home.out("ps", "-aq") == ""


def test_noshell_exec_of_a_missing_command_is_127(hypr_home, noshell):
    hypr_home.run("run", "-d", "--name", "ns", noshell, "sleep", check=True)
    assert hypr_home.out("logs", "ns") == "sleeping\n"
    for missing in ("/nope", "nope"):
        proc = hypr_home.run("exec", "ns", missing)
        assert proc.returncode == 127, proc.stderr
        assert missing in proc.stderr.decode()
    proc = hypr_home.run("exec", "-u", "runner", "ns", "hello", "5")  # found through the image's PATH
    assert proc.returncode == 5
    assert proc.stdout.decode().splitlines()[:3] == ["argv[0]=hello", "argv[1]=5", "uid=2000 gid=2000 euid=2000"]
    t0 = time.monotonic()
    hypr_home.run("stop", "ns", check=True, timeout=60)
    assert time.monotonic() - t0 < 10
    assert json.loads(hypr_home.out("inspect", "ns"))[0]["State"]["ExitCode"] == 143  # SIGTERM, the default


def test_noshell_hostname_env_matches_the_vm_hostname(hypr_home, noshell):
    vm = hypr_home.out("run", "-d", noshell, "0").strip()
    assert hypr_home.out("wait", vm).strip() == "0"
    assert f"env:HOSTNAME={vm[:12]}" in hypr_home.out("logs", vm).splitlines()


# --- the layer diff of the builder (no VM; here because it exists for these images) ----------


def test_builder_diff_whiteouts_replacements_and_hard_links(tmp_path):
    w = BUILDER.w
    old_tar, new_tar, layer = tmp_path / "old.tar", tmp_path / "new.tar", tmp_path / "layer.tar"
    w.write_layer_tar([
        w.directory("./"), w.directory("./a"), w.file("./a/keep", "k"), w.directory("./a/gone"),
        w.file("./a/gone/x", "x"), w.directory("./b"), w.file("./b/f", "f"), w.file("./c", "c"),
        w.directory("./dev"), w.chardev("./dev/null", 1, 3),
    ], old_tar)
    w.write_layer_tar([
        w.directory("./"), w.directory("./a"), w.file("./a/keep", "k"),
        w.file("./b", "b is a file now"), w.file("./c", "c"), w.hardlink("./c2", "./c"),
        w.file("./d", "new"), w.hardlink("./d2", "./d"), w.directory("./dev"), w.chardev("./dev/null", 1, 3),
    ], new_tar)
    old, new = BUILDER.TarTree.from_tar(old_tar), BUILDER.TarTree.from_tar(new_tar)
    d = BUILDER.diff(old, new)
    assert d.deleted == ["a/gone", "b"]  # one whiteout per subtree; b was a directory
    assert d.changed == ["b", "c2", "d", "d2"]
    BUILDER.write_layer(new, d, layer)
    with tarfile.open(layer) as t:
        members = {m.name: m for m in t}
        assert list(members) == ["a/.wh.gone", ".wh.b", "b", "c2", "d", "d2"]
        assert t.extractfile("c2").read() == b"c"  # its target is below: a copy
        assert members["d2"].islnk() and members["d2"].linkname == "d"  # its target is here: a link
    assert BUILDER.diff(new, new).changed == [] and BUILDER.diff(new, new).deleted == []
