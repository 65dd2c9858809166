"""The systemd deployment in deploy/: the unit, its sysusers entry and the example config.

The unit is checked with the machine's own `systemd-analyze` (Debian 12: systemd 252):
`verify` for syntax and semantics, `security --offline` for the sandbox's exposure
score. The rest checks that the unit, deploy/sysusers.d/mailwatch.conf and the
example deploy/mailwatch.toml agree with each other and with the daemon.
"""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from mailwatch.config import load_settings
from mailwatch.daemon.server import SHUTDOWN_TIMEOUT_S

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "mailwatch.service"
SYSUSERS = DEPLOY / "sysusers.d" / "mailwatch.conf"
EXAMPLE_CONFIG = DEPLOY / "mailwatch.toml"
INSTALLED_SCRIPT = "/opt/mailwatch/bin/mailwatch"  # README: the virtualenv lives in /opt/mailwatch

# `systemd-analyze security --offline=true deploy/mailwatch.service` on systemd 252
# (Debian 12) reports 1.1 "OK". What still counts against it, and why it stays:
# the service needs the network (PrivateNetwork 0.5, AF_INET/AF_INET6 0.3, AF_UNIX
# 0.1 for sd_notify, journald and a local PostgreSQL), mail servers may be anywhere
# (no IP allow list, 0.2), it runs from the host's root (RootDirectory 0.1), and
# ProtectClock= itself adds DeviceAllow=char-rtc:r (0.1; PrivateDevices= leaves no
# /dev/rtc to read anyway).
MEASURED_EXPOSURE = 1.1
EXPOSURE_MARGIN = 0.1
ACCEPTED_EXPOSURES = {
    "RootDirectory=/RootImage=",
    "RestrictAddressFamilies=~AF_UNIX",
    "RestrictAddressFamilies=~AF_(INET|INET6)",
    "PrivateNetwork=",
    "DeviceAllow=",
    "IPAddressDeny=",
}

_TIMESPAN_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values in order]}}: systemd keys may repeat, so configparser won't do."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def timespan_s(value: str) -> float:
    """A systemd time span such as "15s", "5min" or "1min 30s", in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, f"not a time span: {value!r}"
    return sum(float(number) * _TIMESPAN_UNITS[unit or "s"] for number, unit in parts)


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT)["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key, [])
    assert len(values) == 1, f"{key}= should be set exactly once, found {values}"
    return values[0]


def credentials(service: dict[str, list[str]]) -> dict[str, str]:
    """LoadCredential=NAME:PATH lines as {NAME: PATH}."""
    pairs = [value.split(":", 1) for value in service.get("LoadCredential", [])]
    return {name: path for name, path in pairs}


def load_toml(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def systemd_analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return binary


# --- The unit agrees with the example config, the sysusers entry and the daemon ---


def test_example_config_reads_exactly_the_credentials_the_unit_loads(service, tmp_path: Path) -> None:
    loaded = credentials(service)
    data = load_toml(EXAMPLE_CONFIG)
    sections = [mailbox["imap"] for mailbox in data["mailbox"]] + [data["smtp"]]
    wanted = {section["password_credential"] for section in sections if "password_credential" in section}
    assert wanted == set(loaded), "password_credential names in deploy/mailwatch.toml vs LoadCredential= names"
    # The real loader, given what systemd would put in $CREDENTIALS_DIRECTORY, accepts the example.
    for name in loaded:
        (tmp_path / name).write_text(f"secret-{name}\n")
    settings = load_settings(EXAMPLE_CONFIG, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert settings.mailboxes[0].imap.password.reveal() == "secret-imap"
    assert settings.smtp is not None and settings.smtp.password.reveal() == "secret-smtp"


def test_credential_files_live_in_the_configuration_directory(service) -> None:
    config_dir = Path("/etc") / one(service, "ConfigurationDirectory")
    assert credentials(service), "no LoadCredential= lines"
    for name, path in credentials(service).items():
        assert Path(path).is_absolute() and Path(path).parent == config_dir, f"credential {name}: {path}"
    assert f"MAILWATCH_CONFIG={config_dir / 'mailwatch.toml'}" in service["Environment"]


def test_example_database_is_in_the_state_directory(service) -> None:
    state_dir = Path("/var/lib") / one(service, "StateDirectory")
    url = make_url(load_toml(EXAMPLE_CONFIG)["service"]["database"])
    assert url.get_backend_name() == "sqlite"
    # Everything else is read-only under ProtectSystem=strict; SQLite also writes its
    # -wal and -shm files beside the database, so the folder itself must be writable.
    assert Path(url.database).parent == state_dir
    assert one(service, "ProtectSystem") == "strict"


def test_sysusers_creates_the_service_user_with_the_state_directory_as_home(service) -> None:
    entries = [line.split() for line in SYSUSERS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    users = {fields[1]: fields for fields in entries if fields[0] == "u"}
    user = one(service, "User")
    assert user in users and one(service, "Group") == user  # "u" also creates the group
    line = SYSUSERS.read_text()
    assert f"/var/lib/{one(service, 'StateDirectory')}" in line and "/usr/sbin/nologin" in line


def test_commands_run_the_installed_virtualenv(service) -> None:
    assert one(service, "ExecStart") == f"{INSTALLED_SCRIPT} run"
    assert one(service, "ExecStartPre") == f"{INSTALLED_SCRIPT} db upgrade"
    assert one(service, "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_lifecycle_settings_fit_the_daemon(service) -> None:
    assert one(service, "Type") == "notify" and one(service, "NotifyAccess") == "main"
    assert one(service, "Restart") == "on-failure"
    # systemd must not SIGKILL a daemon that is still finishing its in-flight sends.
    assert timespan_s(one(service, "TimeoutStopSec")) >= SHUTDOWN_TIMEOUT_S + 2
    assert timespan_s(one(service, "WatchdogSec")) >= 30


# --- systemd-analyze ---


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    # `verify` refuses a unit whose ExecStart= binary does not exist, and
    # /opt/mailwatch/bin/mailwatch exists only on an installed machine. So verify a
    # copy whose commands point at this virtualenv's own mailwatch script instead;
    # nothing else in the copy changes. The copy keeps the unit's name, because
    # `verify` derives the unit name from the file name.
    script = Path(sys.executable).parent / "mailwatch"
    if not script.exists():
        pytest.skip(f"no mailwatch script next to {sys.executable} to stand in for {INSTALLED_SCRIPT}")
    text = UNIT.read_text()
    assert INSTALLED_SCRIPT in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_SCRIPT, str(script)))
    result = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60)
    # Unknown keys and unparsable values are only warnings (exit code 0), so any
    # complaint about our unit fails the test; lines about the host's other units don't.
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "mailwatch" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_security_exposure_stays_at_the_measured_level() -> None:
    analyze = systemd_analyze()
    help_text = subprocess.run([analyze, "security", "--help"], capture_output=True, text=True, timeout=30).stdout
    if "--offline" not in help_text:
        pytest.skip("this systemd-analyze has no `security --offline` (needs systemd >= 250)")
    result = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for mailwatch\.service: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) <= MEASURED_EXPOSURE + EXPOSURE_MARGIN, result.stdout
    # Each check still failing must be one we accepted above, for the reason given there.
    failing = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("✗")}
    assert failing <= ACCEPTED_EXPOSURES, f"newly exposed: {sorted(failing - ACCEPTED_EXPOSURES)}"
