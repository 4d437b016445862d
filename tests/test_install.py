"""scripts/install, run for real into a throwaway root (`--root`), as root.

One scenario, run once for the module (each step builds or changes a virtualenv: slow):
install the collector and the agent; run again; fail an upgrade (a lock whose hashes match
no file); upgrade to a bumped version; add the broker; make it a sub-station's (--role
substation) and run that again; uninstall; uninstall again; purge.
Each test checks one property of what the scenario recorded. The packages come from a
wheelhouse downloaded with the lock's hashes under the test's folder, then `--wheels` (no
index).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
LOCK_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.MULTILINE)
UNITS = ("fleet-collector.service", "fleet-agent.service")
DROP_IN = "/etc/systemd/system/mosquitto.service.d/fleet.conf"
BRIDGE_PASSWORD = "bridge-password-made-at-the-centre"
STATE_FILES = {  # what the services keep in /var/lib/fleet: no upgrade may touch it
    "spool.sqlite": os.urandom(4096),
    "outbox.sqlite": os.urandom(2048),
    "alerts.sqlite": os.urandom(1024),
    "alerts.assignments.sqlite": os.urandom(512),
}

# path inside the root -> (mode, uid, gid, mtime_ns, sha256 of a file / target of a link)
Snapshot = dict[str, tuple[int, int, int, int, str]]


def locked_pins(text: str) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in LOCK_PIN.findall(text)}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the lock (fast: nothing installed) -----------------------------------------------------


def test_every_runtime_dependency_is_pinned_in_the_lock_as_pyproject_allows() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = locked_pins(LOCK.read_text(encoding="utf-8"))
    # setuptools too: the install builds the project's wheel with the locked one.
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    problems = []
    for req in map(Requirement, wanted):
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name}: not in requirements.lock")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}: locked {pinned}, pyproject.toml wants {req.specifier}")
    assert not problems, "run scripts/lock:\n" + "\n".join(problems)


def test_every_entry_of_the_lock_is_an_exact_pin_with_hashes() -> None:
    body = [line for line in LOCK.read_text(encoding="utf-8").splitlines() if line.strip()]
    entries: list[list[str]] = []
    for line in body:
        if not line.startswith((" ", "#")):
            entries.append([line])
        elif entries and line.lstrip().startswith("--hash"):
            entries[-1].append(line)
    assert len(entries) >= 20  # the whole tree, not only the direct dependencies
    for first, *hashes in entries:
        assert LOCK_PIN.match(first), first
        assert hashes, f"{first}: no --hash"
        assert all(re.search(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes), first


# --- the scenario --------------------------------------------------------------------------


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Scenario:
    src: Path  # the frozen copy of the checkout that was installed
    root: Path
    version: str
    bumped: str
    runs: dict[str, Run] = field(default_factory=dict)
    snaps: dict[str, Snapshot] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # where /opt/fleet/venv pointed
    versions: dict[str, dict[str, str]] = field(default_factory=dict)  # in the venv
    shebang: str = ""  # of the installed `fleet` script
    seconds: dict[str, float] = field(default_factory=dict)  # each step's wall time
    confs: dict[str, str] = field(default_factory=dict)  # the generated mosquitto.conf


def snapshot(root: Path) -> Snapshot:
    """Every path under the root, as the machine will see it, with what a change touches."""
    snap: Snapshot = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            what = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            what = sha(path.read_bytes())
        else:
            what = ""
        name = "/" + path.relative_to(root).as_posix().removeprefix(".")
        snap[name] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, what)
    return snap


def attrs(snap: Snapshot, path: str) -> tuple[int, int, int]:
    mode, uid, gid, _, _ = snap[path]
    return stat.S_IMODE(mode), uid, gid


def fleet_ids(root: Path) -> tuple[int, int]:
    """The uid of user fleet and gid of group fleet in the root's own passwd and group."""
    ids = []
    for name in ("passwd", "group"):
        for line in (root / "etc" / name).read_text(encoding="utf-8").splitlines():
            if line.split(":")[0] == "fleet":
                ids.append(int(line.split(":")[2]))
    assert len(ids) == 2, "no user and group fleet in the root"
    return ids[0], ids[1]


def copy_checkout(src: Path, dest: Path, version: str | None = None) -> Path:
    """A frozen copy of the sources, so that edits to the checkout while the scenario runs
    (other work) do not look like a new version; with `version`, a newer one."""
    skip = shutil.ignore_patterns(".*", "run", "build", "*.egg-info", "__pycache__", "tests")
    shutil.copytree(src, dest, symlinks=True, ignore=skip)
    if version:
        pyproject = dest / "pyproject.toml"
        text = re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text())
        pyproject.write_text(text, encoding="utf-8")
    return dest


def venv_versions(root: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as md, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in md.distributions()}))"
    )
    python = root / "opt/fleet/venv/bin/python"
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    return {canonicalize_name(k): v for k, v in json.loads(out.stdout).items()}


def download_wheels(dest: Path, env: dict[str, str], py: str) -> None:
    """The locked files, checked against the lock's hashes, for the Python the venv uses."""
    pip = [sys.executable, "-m", "pip", "download", "-q", "--require-hashes", "--no-deps"]
    pip += ["--only-binary=:all:", "--python-version", py, "-d", str(dest), "-r", str(LOCK)]
    subprocess.run(pip, check=True, capture_output=True, env=env)


def wheelhouse(base: Path, env: dict[str, str]) -> Path:
    """The locked wheels, downloaded under the test's own folder (~16 s): a cache kept
    between runs would have to live outside it."""
    py = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    download_wheels(base / "wheels", env, py)
    return base / "wheels"


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    if os.geteuid() != 0:
        pytest.fail("scripts/install runs as root, and so do its tests (as scripts/test does)")
    if not shutil.which("systemd-sysusers"):
        pytest.fail("systemd-sysusers is missing (Debian package systemd)")
    base = tmp_path_factory.mktemp("install")
    (base / "tmp").mkdir()
    # Its temporary files and pip's cache under the test's folder too.
    env = {**os.environ, "TMPDIR": str(base / "tmp"), "PIP_CACHE_DIR": str(base / "pip-cache")}
    wheels = wheelhouse(base, env)
    src = copy_checkout(ROOT, base / "checkout")
    version = tomllib.loads((src / "pyproject.toml").read_text())["project"]["version"]
    head, _, last = version.rpartition(".")
    s = Scenario(src=src, root=base / "root", version=version, bumped=f"{head}.{int(last) + 1}")

    def step(name: str, checkout: Path, *args: str) -> None:
        command = [
            str(checkout / "scripts/install"),
            "--root",
            str(s.root),
            "--wheels",
            str(wheels),
        ]
        command += args
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        s.seconds[name] = time.monotonic() - started
        s.runs[name] = Run(done.returncode, done.stdout, done.stderr)
        s.snaps[name] = snapshot(s.root)
        conf = s.root / "etc/fleet/broker/mosquitto.conf"
        if conf.is_file():
            s.confs[name] = conf.read_text(encoding="utf-8")
        if (s.root / "opt/fleet/venv").is_symlink():
            s.links[name] = os.readlink(s.root / "opt/fleet/venv")

    step("install", src, "--collector", "--agent")
    assert s.runs["install"].code == 0, s.runs["install"].err
    s.versions["install"] = venv_versions(s.root)
    s.shebang = (s.root / "opt/fleet/venv/bin/fleet").read_text().splitlines()[0]
    step("again", src, "--collector", "--agent")
    # New wording in the README: the copy in /opt/fleet/doc changes, the venv does not.
    reworded = copy_checkout(src, base / "reworded")
    with (reworded / "README.md").open("a", encoding="utf-8") as f:
        f.write("\nOne more paragraph.\n")
    step("reworded", reworded)

    # The services' state and the admin's edits, which no upgrade may touch.
    state = s.root / "var/lib/fleet"
    for name, data in STATE_FILES.items():
        (state / name).write_bytes(data)
        os.chown(state / name, *fleet_ids(s.root))
    (state / "spool.sqlite").chmod(0o600)
    with (s.root / "etc/fleet/fleet.toml").open("a", encoding="utf-8") as f:
        f.write("\n# edited by the admin\n")
    (s.root / "etc/fleet/credentials/mqtt.password").write_text("s3cret\n", encoding="utf-8")
    # An older generation of the venv, which an upgrade clears away.
    (s.root / "opt/fleet/venv-0.0.1-xxxxxx").mkdir()
    s.snaps["edited"] = snapshot(s.root)

    # A lock whose hashes match no file: pip refuses it, and nothing is switched.
    broken = copy_checkout(src, base / "broken", s.bumped)
    head, pin, tail = (broken / "requirements.lock").read_text().partition("\ntomlkit==")
    tail = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, tail)
    (broken / "requirements.lock").write_text(head + pin + tail, encoding="utf-8")
    step("broken", broken, "--collector", "--agent")

    newer = copy_checkout(src, base / "newer", s.bumped)
    step("upgrade", newer)
    s.versions["upgrade"] = venv_versions(s.root)
    step("broker", newer, "--broker")
    # A sub-station: the bridge up to the centre needs its address, CA and password.
    config = s.root / "etc/fleet/fleet.toml"
    head, table, bridge = config.read_text(encoding="utf-8").partition("[broker.bridge]")
    for key in ("address", "cafile", "password_file"):
        bridge = bridge.replace(f"\n# {key} = ", f"\n{key} = ", 1)
    config.write_text(head + table + bridge, encoding="utf-8")
    (s.root / "etc/fleet/broker-bridge.password").write_text(BRIDGE_PASSWORD + "\n")
    step("substation", newer, "--broker", "--role", "substation")
    step("substation again", newer, "--broker", "--role", "substation")
    step("upgrade keeps the role", newer)  # no --role: the one given before
    step("uninstall", newer, "--uninstall")
    step("uninstall again", newer, "--uninstall")
    step("purge", newer, "--uninstall", "--purge")
    return s


@pytest.mark.slow
@pytest.mark.integration
class TestInstall:
    def test_the_files_with_their_owners_and_modes(self, scenario: Scenario) -> None:
        run, snap = scenario.runs["install"], scenario.snaps["install"]
        assert run.code == 0, run.err
        uid, gid = fleet_ids(scenario.root)  # as systemd-sysusers --root wrote them
        assert attrs(snap, "/etc/fleet") == (0o755, 0, 0)
        assert attrs(snap, "/etc/fleet/credentials") == (0o700, 0, 0)
        assert attrs(snap, "/etc/fleet/fleet.toml") == (0o640, 0, gid)
        assert attrs(snap, "/etc/fleet/agent.toml") == (0o640, 0, gid)
        example = (scenario.src / "config/examples/fleet.toml").read_bytes()
        assert snap["/etc/fleet/fleet.toml"][4] == sha(example)
        assert attrs(snap, "/var/lib/fleet") == (0o750, uid, gid)
        assert attrs(snap, "/usr/lib/sysusers.d/fleet.conf") == (0o644, 0, 0)
        for doc in ("README.md", "systemd/README.md"):  # named by the units' Documentation=
            assert attrs(snap, f"/opt/fleet/doc/{doc}") == (0o644, 0, 0)
        for unit in UNITS:
            path = f"/usr/lib/systemd/system/{unit}"
            assert attrs(snap, path) == (0o644, 0, 0)
            assert snap[path][4] == sha((scenario.src / "systemd" / unit).read_bytes())
            assert snap[f"/etc/systemd/system/multi-user.target.wants/{unit}"][4] == path
        # The code: root's, writable by nobody else.
        assert attrs(snap, "/opt/fleet") == (0o755, 0, 0)
        for path, (mode, owner, group, _, _) in snap.items():
            if path.startswith("/opt/fleet/") and not stat.S_ISLNK(mode):
                assert (owner, group, mode & 0o022) == (0, 0, 0), path
        # One line a change, then the summary.
        lines = run.out.splitlines()
        done = ["the system user fleet", "/opt/fleet", "/etc/fleet", "/etc/fleet/credentials"]
        done += ["/etc/fleet/fleet.toml", "/etc/fleet/agent.toml", "/var/lib/fleet"]
        done += ["/usr/lib/sysusers.d/fleet.conf"]
        done += [f"/usr/lib/systemd/system/{unit}" for unit in UNITS]
        done += ["/opt/fleet/doc/README.md", "/opt/fleet/doc/systemd/README.md"]
        done += [f"enabled {unit}" for unit in UNITS]
        for what in done:
            assert [line for line in lines if line.endswith(what) or f"{what} " in line], what
        assert len(lines) == len(done) + 2  # and the venv
        assert lines[-1].startswith(f"install: {len(done) + 1} changes;")

    def test_the_venv_holds_the_locked_versions_and_the_project(self, scenario: Scenario) -> None:
        pins = locked_pins((scenario.src / "requirements.lock").read_text(encoding="utf-8"))
        have = scenario.versions["install"]
        assert {name: have.get(name) for name in pins} == pins
        assert set(have) - set(pins) == {"fleet-telemetry"}  # not even pip
        assert have["fleet-telemetry"] == scenario.version
        link = scenario.links["install"]
        assert re.fullmatch(rf"venv-{re.escape(scenario.version)}-\w+", link)  # relative
        # The scripts name the venv as the machine will see it, not by the root's path.
        assert scenario.shebang == f"#!/opt/fleet/{link}/bin/python"

    def test_the_units_start_what_was_installed(self, scenario: Scenario) -> None:
        for unit in UNITS:
            text = (scenario.src / "systemd" / unit).read_text(encoding="utf-8")
            (command,) = re.findall(r"(?m)^ExecStart=(\S+)", text)
            assert command.startswith("/opt/fleet/venv/bin/"), f"{unit}: {command}"
            # /opt/fleet/venv is a link to the venv of the day.
            real = command.replace("/venv/", f"/{scenario.links['install']}/", 1)
            assert real in scenario.snaps["install"], f"{unit}: {command} is not installed"

    def test_a_second_run_changes_nothing(self, scenario: Scenario) -> None:
        run = scenario.runs["again"]
        assert (run.code, run.err) == (0, "")
        assert run.out == (
            f"install: nothing to do; fleet-telemetry {scenario.version} in "
            f"{scenario.root}/opt/fleet/venv is up to date\n"
        )
        assert scenario.snaps["again"] == scenario.snaps["install"]

    def test_a_new_readme_is_no_new_version(self, scenario: Scenario) -> None:
        run = scenario.runs["reworded"]
        assert run.code == 0, run.err
        assert run.out.splitlines() == [
            f"install: updated {scenario.root}/opt/fleet/doc/README.md",
            f"install: 1 changes; fleet-telemetry {scenario.version} in "
            f"{scenario.root}/opt/fleet/venv",
        ]
        assert scenario.links["reworded"] == scenario.links["install"]

    def test_a_failed_upgrade_leaves_the_old_version_in_place(self, scenario: Scenario) -> None:
        run = scenario.runs["broken"]
        assert run.code == 1
        assert "DO NOT MATCH THE HASHES" in run.err
        assert "the previous version, if any, is still in use" in run.err
        before, after = dict(scenario.snaps["edited"]), dict(scenario.snaps["broken"])
        # The half-built venv came and went: only the folder's own mtime tells.
        for snap in (before, after):
            snap["/opt/fleet"] = (*snap["/opt/fleet"][:3], 0, "")
        assert after == before

    def test_an_upgrade_keeps_state_and_config_and_replaces_the_venv(
        self, scenario: Scenario
    ) -> None:
        run, before, after = (
            scenario.runs["upgrade"],
            *map(scenario.snaps.get, ("edited", "upgrade")),
        )
        assert run.code == 0, run.err
        assert before is not None
        assert after is not None
        kept = {p: v for p, v in before.items() if p.startswith(("/var/lib/fleet", "/etc/fleet"))}
        # the two folders, the credentials folder, the two configs, the credential
        assert len(kept) == len(STATE_FILES) + 6
        assert {p: after.get(p) for p in kept} == kept
        for name, data in STATE_FILES.items():
            assert after[f"/var/lib/fleet/{name}"][4] == sha(data)
        assert scenario.versions["upgrade"]["fleet-telemetry"] == scenario.bumped
        old, new = scenario.links["install"], scenario.links["upgrade"]
        assert new.startswith(f"venv-{scenario.bumped}-")
        assert f"/opt/fleet/{old}/bin/fleet" in after  # the previous one stays, for a rollback
        assert "/opt/fleet/venv-0.0.1-xxxxxx" not in after  # older ones go
        assert run.out.splitlines() == [
            f"install: upgraded {scenario.root}/opt/fleet/venv to {new} "
            f"(fleet-telemetry {scenario.bumped})",
            f"install: removed {scenario.root}/opt/fleet/venv-0.0.1-xxxxxx",
            # The README of the version before it had one more paragraph; the units are the same.
            f"install: updated {scenario.root}/opt/fleet/doc/README.md",
            f"install: 3 changes; fleet-telemetry {scenario.bumped} in {scenario.root}/opt/fleet/venv",
        ]

    def test_broker_installs_the_mosquitto_drop_in(self, scenario: Scenario) -> None:
        run, snap = scenario.runs["broker"], scenario.snaps["broker"]
        assert run.code == 0, run.err
        text = (scenario.src / "systemd/mosquitto-fleet.conf").read_text(encoding="utf-8")
        assert attrs(snap, DROP_IN) == (0o644, 0, 0)
        assert snap[DROP_IN][4] == sha(text.encode())
        assert re.findall(r"(?m)^ExecStart=.*$", text) == [
            "ExecStart=",
            "ExecStart=/usr/sbin/mosquitto -c /etc/fleet/broker/mosquitto.conf",
        ]
        # Made inside the root, the generated files name each other as the machine will.
        conf = scenario.confs["broker"]
        assert "password_file /etc/fleet/broker/passwords" in conf
        assert str(scenario.root) not in conf
        assert attrs(snap, "/etc/fleet/broker/mosquitto.conf")[0] == 0o640
        assert attrs(snap, "/etc/fleet/broker/credentials") == (0o700, 0, 0)
        assert f"install: broker-config: wrote {scenario.root}/etc/fleet/broker/acl" in run.out
        # The root has no user mosquitto: said, with what to do on the machine.
        assert "no user mosquitto in" in run.err
        assert "/etc/fleet/broker.role" not in snap  # the default, never asked for

    def test_role_substation_bridges_up_and_a_second_run_changes_nothing(
        self, scenario: Scenario
    ) -> None:
        run, snap = scenario.runs["substation"], scenario.snaps["substation"]
        assert run.code == 0, run.err
        conf = scenario.confs["substation"]
        for line in (
            "connection bridge-allingtown",
            "address broker.hq.example:8883",
            "bridge_cafile /etc/fleet/tls/ca.pem",
            f"remote_password {BRIDGE_PASSWORD}",
        ):
            assert line in conf.splitlines()
        assert f"install: broker-config: wrote {scenario.root}/etc/fleet/broker/mosquitto.conf" in (
            run.out.splitlines()
        )
        assert attrs(snap, "/etc/fleet/broker.role") == (0o644, 0, 0)
        assert snap["/etc/fleet/broker.role"][4] == sha(b"substation\n")
        assert BRIDGE_PASSWORD not in run.out + run.err
        for again in ("substation again", "upgrade keeps the role"):
            rerun = scenario.runs[again]
            assert rerun.code == 0, rerun.err
            assert rerun.out.startswith("install: nothing to do;"), (again, rerun.out)
            assert scenario.snaps[again] == snap, again

    def test_a_role_needs_the_broker_and_a_known_name(self, tmp_path: Path) -> None:
        script = str(ROOT / "scripts/install")
        for args, message in (
            (["--role", "substation"], "--role goes with --broker"),
            (["--broker", "--role", "edge"], "--role edge: one of single, substation, central"),
        ):
            done = subprocess.run(
                [script, "--root", str(tmp_path), *args], capture_output=True, text=True
            )
            assert (done.returncode, done.stderr) == (1, f"install: error: {message}\n")
        assert list(tmp_path.iterdir()) == []  # refused before anything was made

    def test_uninstall_removes_the_software_and_keeps_the_data(self, scenario: Scenario) -> None:
        run, before, after = (
            scenario.runs["uninstall"],
            *map(scenario.snaps.get, ("upgrade keeps the role", "uninstall")),
        )
        assert run.code == 0, run.err
        assert before is not None
        assert after is not None
        gone = (
            "/opt/fleet",
            "/usr/lib/systemd/system/fleet-",
            "/usr/lib/sysusers.d/fleet.conf",
            "/etc/systemd/system/mosquitto.service.d",
            "/etc/systemd/system/multi-user.target.wants",
        )
        assert [p for p in before if p.startswith(gone)]
        assert not [p for p in after if p.startswith(gone)]
        kept = {p: v for p, v in before.items() if p.startswith(("/etc/fleet", "/var/lib/fleet"))}
        assert {p: after.get(p) for p in kept} == kept
        again = scenario.runs["uninstall again"]
        assert again.code == 0
        assert again.out.startswith("install: uninstalled (0 changes)")
        assert scenario.snaps["uninstall again"] == after

    def test_purge_removes_the_data_and_keeps_the_user(self, scenario: Scenario) -> None:
        run, after = scenario.runs["purge"], scenario.snaps["purge"]
        assert run.code == 0, run.err
        assert not [p for p in after if p.startswith(("/etc/fleet", "/var/lib/fleet"))]
        assert f"install: removed {scenario.root}/var/lib/fleet\n" in run.out
        assert fleet_ids(scenario.root)  # files it owned may remain elsewhere
