"""The simulated Xen 4.4 ``xl`` prints only what the real one prints (its sources).

Each expected line is quoted from Xen 4.4.1's tools/libxl (xl.c, xl_cmdimpl.c,
xl_cmdtable.c, libxl.c, libxl_dom.c) and libxc's xc_domain_save.c. The simulated lab
has no line of its own: a request Xen would take (migrating a domain that is still
booting) is taken, not refused with a made-up reason.
"""

from __future__ import annotations

from backend.drivers.parse_xl import MigratePhase, XlMigrateParser
from backend.sim.clock import VirtualRuntime
from backend.sim.commands.base import Captured
from backend.sim.labs import build_world, model_for, preparation
from backend.sim.model import BOOT_S
from backend.sim.study import study_lab
from backend.sim.world import World
from tests.unit.test_sim_formats import ready_world


async def exported_world() -> World:
    """The study's lab prepared (disk exported, hosts logged in), the guest not booted."""
    lab = study_lab()
    runtime = VirtualRuntime(model_for(lab))
    world = build_world(lab, runtime)

    async def setup() -> None:
        for host, argv in preparation(lab):
            if argv[:2] == ["xl", "create"]:
                continue
            out = Captured(runtime)
            assert await world.execute(world.node(host), argv, out) == 0, out.lines
        await runtime.sleep(1)

    await runtime.run(setup())
    return world


async def execute(world: World, host: str, argv: list[str]) -> tuple[int, Captured]:
    out = Captured(world.runtime)
    runtime = world.runtime
    assert isinstance(runtime, VirtualRuntime)
    code = await runtime.run(world.execute(world.node(host), argv, out))
    return code, out


def migrate_result(out: Captured, code: int) -> XlMigrateParser:
    parser = XlMigrateParser()
    for line in out.text("stderr").split("\n"):
        parser.feed(line)
    parser.finish(code)
    return parser


async def test_xl_migrates_a_guest_that_is_still_booting() -> None:
    world = await exported_world()
    config = world.guest_config_path
    code, out = await execute(world, "xenserver1", ["xl", "create", config])
    assert code == 0 and out.text("stdout") == f"Parsing config from {config}\n"
    assert world.model.guest.status == "booting"
    code, out = await execute(world, "xenserver1", ["xl", "-v", "migrate", "guest", "xenserver2"])
    assert "not running" not in out.text("stderr")
    assert code == 0, out.text("stderr")
    result = migrate_result(out, code).result
    assert result is not None and result.phase is MigratePhase.DONE
    assert world.model.guest.host == "xenserver2" and world.model.guest_up
    assert world.model.guest.ready_at >= BOOT_S


async def test_a_second_migration_breaks_at_the_receiver_as_libxl_says() -> None:
    world = await ready_world()
    runtime = world.runtime
    assert isinstance(runtime, VirtualRuntime)
    first, second = Captured(runtime), Captured(runtime)
    node = world.node("xenserver1")

    async def both() -> tuple[int, int]:
        task = runtime.spawn(world.execute(node, ["xl", "migrate", "guest", "xenserver2"], first))
        await runtime.sleep(5)
        code = await world.execute(node, ["xl", "migrate", "guest", "xenserver2"], second)
        return await runtime.join(task), code

    first_code, second_code = await runtime.run(both())
    assert first_code == 0 and second_code == 1
    assert second.text("stderr") == (
        "migration target: Ready to receive domain.\n"
        'libxl: error: libxl.c:319:libxl__domain_rename: domain with name "guest--incoming" '
        "already exists.\n"
        "libxl: error: libxl_create.c:743:initiate_domain_create: cannot make domain: -6\n"
        "migration target: Domain creation failed (code -6).\n"
        "xc: error: Error when writing to state file (4c) (errno 32) (32 = Broken pipe): "
        "Internal error\n"
        "migration sender: libxl_domain_suspend failed (rc=-3)\n"
        "Migration failed, resuming at sender.\n"
    )
    assert world.model.guest.host == "xenserver2"


async def test_create_prints_what_xl_4_4_prints() -> None:
    world = await ready_world()
    code, out = await execute(world, "xenserver1", ["xl", "create", world.guest_config_path])
    assert code == 6
    assert out.text("stderr") == (
        'libxl: error: libxl.c:319:libxl__domain_rename: domain with name "guest" '
        "already exists.\n"
        "libxl: error: libxl_create.c:743:initiate_domain_create: cannot make domain: -6\n"
    )
    code, out = await execute(world, "xenserver1", ["xl", "create", "/etc/xen/nope.cfg"])
    assert (code, out.text("stderr")) == (
        3,
        "Failed to read config file: /etc/xen/nope.cfg: No such file or directory\n",
    )
    code, out = await execute(world, "xenserver1", ["xl", "create"])
    assert (code, out.text("stderr")) == (6, "Config file not specified and none in save file\n")
    world.node("xenserver1").write("/etc/xen/other.cfg", 'name = "other"\nmemory = 1024\n')
    code, out = await execute(world, "xenserver1", ["xl", "create", "/etc/xen/other.cfg"])
    assert code == 3 and out.text("stderr") == "failed to free memory for the domain\n"
    assert "simulated" not in out.text("stdout") + out.text("stderr")


async def test_usage_errors_are_xls_own() -> None:
    world = await ready_world()
    code, out = await execute(world, "xenserver1", ["xl", "migrate", "guest"])
    assert code == 2
    assert out.text("stderr") == "'xl migrate' requires at least 2 arguments.\n\n"
    assert out.text("stdout").startswith(
        "Usage: xl [-vN] migrate [options] <Domain> <host>\n\n"
        "Migrate a domain to another host.\n\nOptions:\n\n-h              Print this help.\n"
    )
    code, out = await execute(world, "xenserver1", ["xl", "-x", "list"])
    assert (code, out.text("stderr")) == (2, "xl: invalid option -- 'x'\nunknown global option\n")
    code, out = await execute(world, "xenserver1", ["xl"])
    assert code == 1 and out.text("stderr") == ""
    assert out.text("stdout").startswith(
        "Usage xl [-vfN] <subcommand> [args]\n\nxl full list of subcommands:\n\n"
        " create              Create a domain from config file <filename>\n"
    )
    code, out = await execute(world, "xenserver1", ["xl", "frobnicate"])
    assert (code, out.text("stderr")) == (1, "command not implemented\n")
    code, out = await execute(world, "xenserver1", ["xl", "destroy"])
    assert code == 2 and out.text("stderr") == "'xl destroy' requires at least 1 argument.\n\n"


async def test_unknown_domains_are_reported_as_xl_does() -> None:
    world = await ready_world()
    code, out = await execute(world, "xenserver2", ["xl", "list", "guest"])
    assert (code, out.text("stderr")) == (1, "guest is an invalid domain identifier (rc=-6)\n")
    code, out = await execute(world, "xenserver1", ["xl", "list", "42"])
    assert (code, out.text("stderr")) == (6, "Error: Domain '42' does not exist.\n")
    code, out = await execute(world, "xenserver1", ["xl", "destroy", "42"])
    assert (code, out.text("stderr")) == (
        255,
        "libxl: error: libxl.c:1384:libxl__destroy_domid: non-existant domain 42\n"
        "destroy failed (rc=-6)\n",
    )
    code, out = await execute(world, "xenserver1", ["xl", "destroy", "Domain-0"])
    assert (code, out.text("stderr")) == (255, "Cannot destroy privileged domain 0.\n\n")
    code, out = await execute(world, "xenserver1", ["xl", "shutdown", "42"])
    assert code == 255 and out.text("stderr").endswith("shutdown failed (rc=-3)\n")
    code, out = await execute(world, "xenserver1", ["xl", "migrate", "guest", "nowhere"])
    assert code == 1
    assert out.text("stderr").startswith(
        "ssh: Could not resolve hostname nowhere: Name or service not known\n"
    )
    code, out = await execute(world, "xenserver1", ["xl", "migrate", "guest", "root@nowhere"])
    assert "ssh: Could not resolve hostname nowhere:" in out.text("stderr")
    assert world.model.guest.host == "xenserver1" and world.model.guest_up


async def test_destroying_the_guest_under_a_migration_ends_xl_migrate() -> None:
    world = await ready_world()
    runtime = world.runtime
    assert isinstance(runtime, VirtualRuntime)
    out = Captured(runtime)
    node = world.node("xenserver1")

    async def scenario() -> int:
        task = runtime.spawn(world.execute(node, ["xl", "migrate", "guest", "xenserver2"], out))
        await runtime.sleep(5)
        assert await world.execute(node, ["xl", "destroy", "guest"], Captured(runtime)) == 0
        return await runtime.join(task)

    code = await runtime.run(scenario())
    assert code == 1 and "Migration failed" in out.text("stderr")
    assert world.model.guest.status == "off"
