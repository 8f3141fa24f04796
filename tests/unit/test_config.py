"""lab.toml: the models, the loader, its error messages and line numbers.

Bad examples live in tests/data/labs/bad/, one defect a file. Each file says what
it expects in its header, one line per error:

    # expect: hosts.xenserver1.adress @ 13     (key path @ line)
    # expect: guest @ none                      (no line: the table is absent)
    # expect: - @ 35                            (no key: a TOML syntax error)
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from backend.config import (
    LabConfig,
    Portal,
    Secret,
    Storage,
    lab_digest,
    lab_json_schema,
    load_lab,
    parse_lab,
)
from backend.tomlfile import ConfigError, ConfigErrors, KeyLines

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
LABS = ROOT / "tests" / "data" / "labs"
BAD = sorted((LABS / "bad").glob("*.toml"))
EXPECT = re.compile(r"^# expect: (\S+) @ (\d+|none)$")

# A file with no room for a header.
NO_HEADER: dict[str, set[tuple[str, int | None]]] = {
    "empty.toml": {(t, None) for t in ("lab", "hosts", "storage", "hypervisor", "guest")},
}

SECRET_VALUE = "Zebra-s3cr3t-4242"
PASSPHRASE_VALUE = "Okapi-passphrase-7777"

MINIMAL = """\
[lab]
name = "t"
link_mbit = 100

[hosts.a]
address = "10.0.0.1"

[hosts.b]
address = "10.0.0.2"

[storage]
host = "a"
driver = "tgt"
iqn = "iqn.2024-01.org.example:disk"
device = "/dev/vdb"
portal = "10.0.0.1"

[hypervisor]
driver = "qemu"
hosts = ["a", "b"]

[guest]
name = "g"
address = "10.0.0.50"
vcpus = 1
memory_mb = 256

[guest.qemu]
kernel = "/var/lib/miglab/vmlinuz"
"""


def expectations(path: Path) -> set[tuple[str, int | None]]:
    if path.name in NO_HEADER:
        return NO_HEADER[path.name]
    found: set[tuple[str, int | None]] = set()
    for line in path.read_text().splitlines():
        match = EXPECT.match(line)
        if match:
            key = "" if match.group(1) == "-" else match.group(1)
            found.add((key, None if match.group(2) == "none" else int(match.group(2))))
    assert found, f"{path.name} has no '# expect: KEY @ LINE' header"
    return found


def errors_of(path: Path) -> tuple[ConfigError, ...]:
    with pytest.raises(ConfigError) as info:
        load_lab(path)
    return info.value.errors


def with_storage(**changes: Any) -> dict[str, Any]:
    storage = {
        "host": "a",
        "driver": "tgt",
        "iqn": "iqn.2024-01.org.example:disk",
        "device": "/dev/vdb",
        "portal": "10.0.0.1",
    }
    storage.update(changes)
    return storage


# --------------------------------------------------------------------------- the reference lab


def test_reference_lab_loads_with_the_study_values() -> None:
    lab = load_lab(ROOT / "lab.toml")
    assert lab.lab.name == "ufla-2009"
    assert lab.lab.link_mbit == 100
    assert list(lab.hosts) == ["iscsiserver", "xenserver1", "xenserver2"]
    assert [h.address for h in lab.hosts.values()] == ["192.168.0.1", "192.168.0.2", "192.168.0.3"]
    assert all(h.user == "root" and h.host_key == "strict" for h in lab.hosts.values())
    assert lab.storage.host == "iscsiserver"
    assert lab.storage.driver == "iet"
    assert lab.storage.iqn == "iqn.2009-06.br.ufla.lab:guest-disk"
    assert lab.storage.device == "/dev/sdb1"
    assert lab.storage.portal == Portal(address="192.168.0.1", port=3260)
    assert lab.storage.lun == 1
    assert lab.storage.chap is None
    assert lab.hypervisor.driver == "xen"
    assert lab.hypervisor.hosts == ["xenserver1", "xenserver2"]
    assert lab.guest.vcpus == 2
    assert lab.guest.memory_mb == 1024
    assert lab.guest.config == "/etc/xen/guest.cfg"
    assert lab.migrate_bandwidth_mbit == 100  # defaults to the link


def test_convenience_accessors() -> None:
    lab = load_lab(ROOT / "lab.toml")
    first, second = lab.hypervisor_hosts
    assert (first.name, second.name) == ("xenserver1", "xenserver2")
    assert lab.host("iscsiserver") is lab.storage_host
    assert all(host.name == name for name, host in lab.hosts.items())
    assert not lab.storage_host.is_local
    with pytest.raises(KeyError, match="xenserver1, xenserver2"):
        lab.host("nope")


def test_digest_and_source_are_recorded() -> None:
    path = ROOT / "lab.toml"
    lab = load_lab(path)
    assert lab.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert lab.digest == lab_digest(path.read_bytes()) == lab_digest(path.read_text())
    assert lab.source_file == str(path)
    assert "digest" not in lab.model_dump() and "source_file" not in lab.model_dump()


def test_every_optional_key() -> None:
    lab = load_lab(LABS / "good" / "everything.toml")
    base = LABS / "good"
    assert lab.lab.description == "Three old desktops on a gigabit switch.\n"
    assert lab.host("storage").is_local
    gateway = lab.host("gateway")
    assert gateway.port == 2222 and gateway.user == "lab"
    assert gateway.identity == base / "keys" / "gateway"
    assert gateway.known_hosts == Path("~/.ssh/known_hosts.lab").expanduser()
    assert gateway.host_key == "accept-new"
    assert gateway.connect_timeout_s == 3.5 and gateway.keepalive_s == 0
    kvm1 = lab.host("kvm1")
    assert kvm1.address == "fd00::11" and kvm1.via == "gateway"
    assert kvm1.identity_passphrase == Secret(env="MIGLAB_TEST_PASSPHRASE")
    assert lab.storage.portal == Portal(address="fd00::1", port=3260)
    assert str(lab.storage.portal) == "[fd00::1]:3260"
    assert lab.storage.lun == 2 and lab.storage.tgt_control_port == 7
    assert lab.storage.chap is not None
    assert lab.storage.chap.secret.file == base / "secrets" / "chap"
    assert [h.name for h in lab.hypervisor_hosts] == ["kvm1", "kvm2"]
    assert lab.migrate_bandwidth_mbit == 800
    assert lab.hypervisor.downtime_limit_ms == 300
    assert lab.guest.config is None  # optional for qemu
    assert lab.guest.identity == base / "keys" / "guest"
    assert (lab.console.ping_interval_s, lab.console.ping) == (0.25, False)


def test_defaults() -> None:
    lab = parse_lab(MINIMAL)
    host = lab.host("a")
    assert host.user is None and host.port is None and host.identity is None
    assert host.known_hosts is None and host.via is None and host.host_key == "strict"
    assert host.connect_timeout_s == 10 and host.keepalive_s == 5
    assert lab.storage.portal.port == 3260 and lab.storage.lun == 1
    assert lab.hypervisor.run_dir == "/run/miglab"
    assert lab.hypervisor.migrate_bandwidth_mbit is None
    assert (lab.console.ping_interval_s, lab.console.ping) == (0.1, True)
    assert lab.source_file == "lab.toml"


def test_dump_round_trips() -> None:
    lab = load_lab(LABS / "good" / "everything.toml")
    assert LabConfig.model_validate(lab.model_dump()) == lab
    assert LabConfig.model_validate(json.loads(lab.model_dump_json())) == lab
    assert lab.model_dump(mode="json")["storage"]["portal"] == "[fd00::1]:3260"


def test_the_loaded_lab_is_frozen() -> None:
    lab = parse_lab(MINIMAL)
    with pytest.raises(ValidationError):
        lab.guest.vcpus = 4


# --------------------------------------------------------------------------- bad files


def test_there_are_enough_bad_examples() -> None:
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_file_reports_key_and_line(path: Path) -> None:
    errors = errors_of(path)
    assert {(e.key, e.line) for e in errors} == expectations(path)
    for error in errors:
        assert error.file == str(path)
        assert error.message and "\n" not in str(error)
        where = f"{path}:{error.line}" if error.line is not None else str(path)
        assert str(error) == ": ".join(p for p in (where, error.key, error.message) if p)


def test_error_paragraph_format() -> None:
    path = LABS / "bad" / "misspelled_host_key.toml"
    with pytest.raises(ConfigErrors) as info:
        load_lab(path)
    err = info.value
    lines = str(err).splitlines()
    assert len(lines) == len(err.errors) == 2
    assert lines[0] == f"{path}:12: hosts.xenserver1.address: required key is missing"
    assert lines[1].startswith(
        f"{path}:13: hosts.xenserver1.adress: unknown key; expected one of address, user, port,"
    )
    assert lines[1].endswith("(did you mean 'address'?)")
    # The aggregate is a ConfigError too, carrying its first problem.
    assert (err.file, err.line, err.key) == (str(path), 12, "hosts.xenserver1.address")


def test_a_single_problem_is_a_plain_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_lab(LABS / "bad" / "vcpus_zero.toml")
    assert type(info.value) is ConfigError
    assert info.value.errors == (info.value,)
    assert info.value.message == "must be at least 1, got 0"


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("wrong_type_string_for_int", "expected an integer, got 'two'"),
        ("wrong_type_bool_for_int", "expected an integer, got true"),
        ("wrong_type_table", "expected a table"),
        ("missing_table", "required table [guest] is missing"),
        ("storage_unknown_host", "unknown host 'nas'; defined hosts: iscsiserver, xenserver1"),
        ("hypervisor_unknown_host", "did you mean 'xenserver2'?"),
        ("bad_storage_driver", "expected 'tgt', 'lio' or 'iet', got 'scst'"),
        ("inline_secret", 'use { env = "VAR" }'),
        ("inline_secret", '{ file = "path" }'),
        ("secret_env_and_file", "exactly one of env or file"),
        ("via_cycle", "xenserver1 -> xenserver2 -> xenserver1"),
        ("duplicate_key", "defined twice (first on line 9)"),
        ("syntax_error", "TOML syntax error"),
        ("bad_portal_port", "out of range"),
    ],
)
def test_error_messages_say_what_is_wrong(name: str, needle: str) -> None:
    messages = " | ".join(e.message for e in errors_of(LABS / "bad" / f"{name}.toml"))
    assert needle in messages


@pytest.mark.parametrize("name", ["inline_secret", "host_passphrase_inline", "secret_unknown_key"])
def test_an_inline_secret_is_not_repeated_in_the_error(name: str) -> None:
    path = LABS / "bad" / f"{name}.toml"
    assert "hunter2-inline" in path.read_text()
    with pytest.raises(ConfigError) as info:
        load_lab(path)
    assert "hunter2" not in str(info.value)


def test_cross_checks_hold_without_the_loader() -> None:
    data = tomllib.loads(MINIMAL)
    data["storage"]["host"] = "nas"
    with pytest.raises(ValidationError, match=r"storage\.host: unknown host 'nas'"):
        LabConfig.model_validate(data)


def test_cross_checks_are_reported_with_type_errors() -> None:
    text = MINIMAL.replace('host = "a"', 'host = "nas"').replace("vcpus = 1", "vcpus = 'x'")
    with pytest.raises(ConfigErrors) as info:
        parse_lab(text)
    assert {e.key for e in info.value.errors} == {"storage.host", "guest.vcpus"}


def test_strict_types() -> None:
    with pytest.raises(ConfigError, match=r"hosts\.a\.port: expected an integer, got '22'"):
        parse_lab(MINIMAL.replace('address = "10.0.0.1"', 'address = "10.0.0.1"\nport = "22"'))
    # An integer is a fine number of seconds.
    lab = parse_lab(
        MINIMAL.replace('address = "10.0.0.1"', 'address = "10.0.0.1"\nkeepalive_s = 2')
    )
    assert lab.host("a").keepalive_s == 2.0


def test_qemu_needs_a_qemu_table() -> None:
    text = MINIMAL.replace('[guest.qemu]\nkernel = "/var/lib/miglab/vmlinuz"\n', "")
    with pytest.raises(ConfigError) as info:
        parse_lab(text)
    assert [(e.key, e.line) for e in info.value.errors] == [("guest.qemu", 22)]  # [guest]
    assert "kernel" in str(info.value)


def test_qemu_needs_no_guest_config_but_xen_does() -> None:
    assert parse_lab(MINIMAL).guest.config is None
    with pytest.raises(ConfigError) as info:
        parse_lab(MINIMAL.replace('driver = "qemu"', 'driver = "xen"'))
    assert (info.value.key, info.value.line) == ("guest.config", 22)


def test_the_storage_host_may_also_be_a_hypervisor_host() -> None:
    lab = parse_lab(MINIMAL.replace('host = "a"', 'host = "b"'))
    assert lab.storage_host is lab.hypervisor_hosts[1]


# --------------------------------------------------------------------------- files


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_lab(path)
    assert (info.value.file, info.value.line, info.value.key) == (str(path), None, "")
    assert str(info.value).startswith(f"{path}: no such file")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_lab(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_bytes(MINIMAL.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_lab(path)
    assert info.value.line == MINIMAL.count("\n") + 1


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    raw = ("\ufeff" + MINIMAL).replace("\n", "\r\n").encode()
    path.write_bytes(raw)
    lab = load_lab(path)
    assert lab.digest == hashlib.sha256(raw).hexdigest()
    bad = raw.replace(b"vcpus = 1", b"vcpus = 0")
    path.write_bytes(bad)
    with pytest.raises(ConfigError) as info:
        load_lab(path)
    assert info.value.line == 25


def test_config_errors_pickle() -> None:
    with pytest.raises(ConfigErrors) as info:
        load_lab(LABS / "bad" / "several_errors.toml")
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value)
    single = ConfigError("lab.toml", 3, "lab.name", "must not be empty")
    assert str(pickle.loads(pickle.dumps(single))) == "lab.toml:3: lab.name: must not be empty"


# --------------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_lab_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    labdir = tmp_path / "labs" / "mine"
    labdir.mkdir(parents=True)
    text = (
        MINIMAL.replace(
            'address = "10.0.0.1"',
            'address = "10.0.0.1"\nidentity = "keys/id_a"\nknown_hosts = "~/kh"\n'
            'identity_passphrase = { file = "../pass" }',
        )
        .replace('address = "10.0.0.2"', 'address = "10.0.0.2"\nidentity = "/abs/id_b"')
        .replace(
            'portal = "10.0.0.1"',
            'portal = "10.0.0.1"\nchap = { user = "u", secret.file = "chap" }',
        )
    )
    (labdir / "lab.toml").write_text(text)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    lab = load_lab(Path("..") / "labs" / "mine" / "lab.toml")
    a = lab.host("a")
    assert a.identity is not None and a.identity.is_absolute()
    assert a.identity.resolve() == (labdir / "keys" / "id_a").resolve()
    assert a.known_hosts == home / "kh"
    assert a.identity_passphrase is not None and a.identity_passphrase.file is not None
    assert a.identity_passphrase.file.resolve() == (labdir.parent / "pass").resolve()
    assert lab.host("b").identity == Path("/abs/id_b")
    assert lab.storage.chap is not None and lab.storage.chap.secret.file is not None
    assert lab.storage.chap.secret.file.resolve() == (labdir / "chap").resolve()
    assert lab.storage.device == "/dev/vdb"  # remote: kept as written

    # parse_lab resolves against base_dir, or the current directory.
    assert parse_lab(text, base_dir=labdir).host("a").identity == labdir / "keys" / "id_a"
    assert parse_lab(text).host("a").identity == elsewhere / "keys" / "id_a"


# --------------------------------------------------------------------------- secrets


def secret_lab(tmp_path: Path) -> Path:
    (tmp_path / "pass").write_text(PASSPHRASE_VALUE + "\n")
    text = MINIMAL.replace(
        'address = "10.0.0.1"',
        'address = "10.0.0.1"\nidentity_passphrase = { file = "pass" }',
    ).replace(
        'portal = "10.0.0.1"',
        'portal = "10.0.0.1"\nchap = { user = "miglab", secret = { env = "MIGLAB_TEST_CHAP" } }',
    )
    path = tmp_path / "lab.toml"
    path.write_text(text)
    return path


def test_no_secret_value_in_repr_str_or_dump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGLAB_TEST_CHAP", SECRET_VALUE)
    lab = load_lab(secret_lab(tmp_path))
    chap = lab.storage.chap
    passphrase = lab.host("a").identity_passphrase
    assert chap is not None and passphrase is not None
    renderings = [
        repr(lab),
        str(lab),
        repr(chap),
        str(chap.secret),
        repr(passphrase),
        str(passphrase),
        str(lab.model_dump()),
        lab.model_dump_json(),
        json.dumps(lab.model_dump(mode="json")),
    ]
    for text in renderings:
        assert SECRET_VALUE not in text
        assert PASSPHRASE_VALUE not in text
    assert "MIGLAB_TEST_CHAP" in repr(chap)  # where it comes from is shown
    # ... and the values are there when asked for.
    assert chap.secret.reveal() == SECRET_VALUE
    assert passphrase.reveal() == PASSPHRASE_VALUE  # trailing newline dropped


def test_reveal_explains_a_missing_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIGLAB_TEST_CHAP", raising=False)
    lab = load_lab(secret_lab(tmp_path))
    assert lab.storage.chap is not None
    with pytest.raises(ConfigError) as info:
        lab.storage.chap.secret.reveal()
    assert info.value.key == "storage.chap.secret"
    assert "MIGLAB_TEST_CHAP is not set" in str(info.value)

    (tmp_path / "pass").unlink()
    passphrase = lab.host("a").identity_passphrase
    assert passphrase is not None
    with pytest.raises(ConfigError, match="cannot read the secret file") as info:
        passphrase.reveal()
    assert info.value.key == "hosts.a.identity_passphrase"

    (tmp_path / "pass").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        passphrase.reveal()


@pytest.mark.parametrize(
    "value",
    ["hunter2", {}, {"env": "A", "file": "b"}, {"env": "not a name"}, {"value": "x"}],
)
def test_secret_forms_that_are_refused(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        Secret.model_validate(value)
    assert "hunter2" not in str(info.value) or value == "hunter2"


# --------------------------------------------------------------------------- schema


def test_json_schema() -> None:
    schema = json.loads(json.dumps(lab_json_schema()))
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"lab", "hosts", "storage", "hypervisor", "guest"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert schema["properties"]["storage"]  # a $ref
    defs = schema["$defs"]
    assert {"Host", "Storage", "Hypervisor", "Guest", "Lab", "Secret", "Chap"} <= set(defs)
    for name, model in [("LabConfig", schema), *defs.items()]:
        if "properties" not in model:
            continue
        assert model.get("additionalProperties") is False, name
        for field, spec in model["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"
    assert defs["Storage"]["properties"]["portal"]["type"] == "string"
    assert defs["Hypervisor"]["properties"]["hosts"]["minItems"] == 2


# --------------------------------------------------------------------------- field rules


@pytest.mark.parametrize(
    ("text", "address", "port"),
    [
        ("10.0.0.1", "10.0.0.1", 3260),
        ("10.0.0.1:3261", "10.0.0.1", 3261),
        ("san.example.org:860", "san.example.org", 860),
        ("[fd00::1]:3260", "fd00::1", 3260),
        ("[fd00::1]", "fd00::1", 3260),
    ],
)
def test_portal_forms(text: str, address: str, port: int) -> None:
    portal = Storage.model_validate(with_storage(portal=text)).portal
    assert (portal.address, portal.port) == (address, port)
    assert Storage.model_validate(with_storage(portal=str(portal))).portal == portal


@pytest.mark.parametrize(
    "text",
    [
        ":3260",
        "10.0.0.1:",
        "10.0.0.1:0",
        "10.0.0.1:65536",
        "10.0.0.1:-1",
        "[fd00::1",
        "[fd00::1]3260",
        "[10.0.0.1]:3260",
        "fd00::1",
        "fd00::1:3260",
        "a b:3260",
        "300.0.0.1:3260",
    ],
)
def test_bad_portals(text: str) -> None:
    with pytest.raises(ValidationError):
        Storage.model_validate(with_storage(portal=text))


@pytest.mark.parametrize(
    "iqn",
    [
        "iqn.2009-06.br.ufla.lab:guest-disk",
        "iqn.2003-01.org.linux-iscsi.host.x8664:sn.abcdef012345",
        "iqn.1992-01.com.example",
        "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
        "eui.02004567A425678D",
        "naa.52004567BA64678D",
        "naa.6001405f6f1c4a1d8c4d2b3e4f5a6b7c",
    ],
)
def test_good_iscsi_names(iqn: str) -> None:
    assert Storage.model_validate(with_storage(iqn=iqn)).iqn == iqn


@pytest.mark.parametrize(
    "iqn",
    [
        "",
        "iqn.2009-6.br.ufla.lab",
        "iqn.09-06.br.ufla.lab",
        "iqn.2009-00.br.ufla.lab",
        "iqn.2009-06.:disk",
        "iqn.2009-06.br..ufla",
        "iqn.2009-06.br.ufla.lab:",
        "iqn.2009-06.br.ufla.lab:guest disk",
        "IQN.2009-06.br.ufla.lab",
        "eui.0200456",
        "naa.52004567BA64678D0",
        "iqn.2009-06.br.ufla.lab:" + "x" * 220,
    ],
)
def test_bad_iscsi_names(iqn: str) -> None:
    with pytest.raises(ValidationError):
        Storage.model_validate(with_storage(iqn=iqn))


@pytest.mark.parametrize(
    "address",
    ["local", "192.168.0.1", "::1", "fe80::1%eth0", "xen1", "xen1.lab.example.org.", "my_host"],
)
def test_good_host_addresses(address: str) -> None:
    lab = parse_lab(MINIMAL.replace('"10.0.0.2"', json.dumps(address)))
    assert lab.host("b").address == address


@pytest.mark.parametrize(
    "address",
    ["", "256.1.1.1", "1.2.3", "[::1]", "-xen", "xen-", "xen..lab", "a" * 64, "host:22", "a b"],
)
def test_bad_host_addresses(address: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_lab(MINIMAL.replace('"10.0.0.2"', json.dumps(address)))
    assert (info.value.key, info.value.line) == ("hosts.b.address", 9)


@pytest.mark.parametrize("user", ["-oProxyCommand=x", "root@evil", "a b", ""])
def test_bad_user_names(user: str) -> None:
    with pytest.raises(ConfigError, match=r"hosts\.a\.user"):
        parse_lab(MINIMAL.replace('address = "10.0.0.1"', f'address = "10.0.0.1"\nuser = "{user}"'))


# --------------------------------------------------------------------------- line scanner


def test_scanner_tables_keys_and_dotted_keys() -> None:
    lines = KeyLines(
        "top = 1\n"  # 1
        "[a.b]\n"  # 2
        "c = 2  # [not.a.table]\n"  # 3
        "d.e.f = 3\n"  # 4
        '[ a . "q.x" ]\n'  # 5
        "'lit' = 4\n"  # 6
        '"esc\\u0061ped" = 5\n'  # 7
    )
    assert lines.line_for(("top",)) == 1
    assert lines.line_for(("a",)) == 2
    assert lines.line_for(("a", "b", "c")) == 3
    assert lines.line_for(("a", "b", "d")) == 4
    assert lines.line_for(("a", "b", "d", "e", "f")) == 4
    assert lines.line_for(("a", "q.x")) == 5
    assert lines.line_for(("a", "q.x", "lit")) == 6
    assert lines.line_for(("a", "q.x", "escaped")) == 7
    assert lines.line_for(("not",)) is None
    assert lines.line_for(("a", "b", "missing")) == 2  # falls back to the table


def test_scanner_inline_tables_and_arrays() -> None:
    lines = KeyLines(
        "[s]\n"  # 1
        'chap = { user = "x", secret = { env = "Y" } }\n'  # 2
        "hosts = [\n"  # 3
        '  "a",  # first ]\n'  # 4
        '  { n = "b", m = [1, 2] },\n'  # 5
        "]\n"  # 6
        "after = 1\n"  # 7
    )
    assert lines.line_for(("s", "chap", "user")) == 2
    assert lines.line_for(("s", "chap", "secret", "env")) == 2
    assert lines.line_for(("s", "hosts")) == 3
    assert lines.line_for(("s", "hosts", 0)) == 4
    assert lines.line_for(("s", "hosts", 1, "m", 1)) == 5
    assert lines.line_for(("s", "after")) == 7


def test_scanner_multiline_strings() -> None:
    lines = KeyLines(
        'a = """\n'  # 1
        "[fake]\n"  # 2
        'b = \\""" still inside\n'  # 3
        '"""""\n'  # 4: two quotes of content, then the closing three
        "c = '''\n"  # 5
        "d = 1'''\n"  # 6
        'e = "x # y"\n'  # 7
        "[real]\n"  # 8
    )
    assert ("fake",) not in lines.lines and ("b",) not in lines.lines
    assert ("d",) not in lines.lines
    assert lines.line_for(("c",)) == 5
    assert lines.line_for(("e",)) == 7
    assert lines.line_for(("real",)) == 8


def test_scanner_arrays_of_tables_and_crlf() -> None:
    lines = KeyLines("[[x]]\r\nn = 1\r\n[[x]]\r\nn = 2\r\n[x.sub]\r\nk = 3\r\n")
    assert lines.line_for(("x", 0, "n")) == 2
    assert lines.line_for(("x", 1, "n")) == 4
    assert lines.line_for(("x", 1, "sub", "k")) == 6


def test_scanner_survives_garbage() -> None:
    lines = KeyLines("a = 1\n= = =\nb = 2\n")
    assert lines.line_for(("a",)) == 1
    assert lines.line_for(("b",)) is None


def parses(path: Path) -> bool:
    try:
        tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError:
        return False
    return True


PARSEABLE = [
    p for p in [ROOT / "lab.toml", *sorted((LABS / "good").glob("*.toml")), *BAD] if parses(p)
]


@pytest.mark.parametrize("path", PARSEABLE, ids=[p.stem for p in PARSEABLE])
def test_scanner_finds_every_key_tomllib_finds(path: Path) -> None:
    text = path.read_text()
    data = tomllib.loads(text)
    lines = KeyLines(text)
    source = text.splitlines()

    def walk(node: Any, loc: tuple[str | int, ...]) -> None:
        if loc:
            assert loc in lines.lines, loc
            if isinstance(loc[-1], str):
                assert loc[-1] in source[lines.lines[loc] - 1], loc
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*loc, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, (*loc, i))

    walk(data, ())


def test_syntax_error_at_the_end_of_the_document() -> None:
    with pytest.raises(ConfigError) as info:
        parse_lab(MINIMAL + "extra = [1,\n")
    assert info.value.key == ""
    assert info.value.line == MINIMAL.count("\n") + 1
    assert info.value.message.startswith("TOML syntax error")
