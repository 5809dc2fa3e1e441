"""The VM runtime's pure parts: host detection, the initramfs archive, qemu argv, bake keys."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import pytest

from shoal.errors import RuntimeNotAvailable
from shoal.manifest.loading import load_manifest
from shoal.runtimes.base import InstanceSpec, Limits
from shoal.runtimes.vm import (
    baking,
    hosting,
    initramfs,
    kernel,
    kernel_config,
    qemu,
    standbys,
    vmlinux,
)
from shoal.runtimes.vm.running import describe, inputs_of, inputs_of_service
from shoal.runtimes.vm.snapshots import Snapshots
from shoal.runtimes.vm.snapshots import disk_identity as snapshot_disk_identity

TCG = hosting.Host(accel="tcg", tsc_khz=2_445_406, why="test")


def test_kvm_only_with_a_hardware_module_and_a_usable_device() -> None:
    assert hosting.choose_accel({"kvm", "kvm_intel"}, kvm_usable=True)[0] == "kvm"
    assert hosting.choose_accel({"kvm", "kvm_amd"}, kvm_usable=True)[0] == "kvm"
    accel, why = hosting.choose_accel({"kvm", "kvm_pvm"}, kvm_usable=True)
    assert accel == "tcg" and "kvm_pvm" in why
    assert hosting.choose_accel({"kvm_intel"}, kvm_usable=False)[0] == "tcg"
    assert hosting.choose_accel(set(), kvm_usable=False)[0] == "tcg"


def test_tsc_khz_from_cpuinfo() -> None:
    assert hosting.parse_tsc_khz("processor\t: 0\ncpu MHz\t\t: 2445.406\n") == 2_445_406
    assert hosting.parse_tsc_khz("nothing here") == hosting.DEFAULT_TSC_KHZ


def test_a_missing_tool_names_its_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda *a, **k: None)
    with pytest.raises(RuntimeNotAvailable, match=r"apt-get install qemu-system-x86"):
        hosting.require("qemu-system-x86_64")
    with pytest.raises(RuntimeNotAvailable, match=r"apt-get install mmdebstrap"):
        hosting.require("mmdebstrap")


def _unpack(archive: bytes) -> dict[str, tuple[int, bytes]]:
    """A minimal newc reader: name -> (mode, data)."""
    out: dict[str, tuple[int, bytes]] = {}
    stream = io.BytesIO(archive)
    while True:
        header = stream.read(110)
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = stream.read(namesize)[:-1].decode()
        stream.read(-(110 + namesize) % 4)
        data = stream.read(size)
        stream.read(-size % 4)
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, data)


def test_initramfs_archive_round_trips() -> None:
    archive = initramfs.newc(initramfs.entries(b"\x7fELF static init"))
    assert len(archive) % 4 == 0
    files = _unpack(archive)
    assert files["init"] == (0o100755, b"\x7fELF static init")
    for mount_point in ("dev", "proc", "sys", "newroot"):
        assert files[mount_point][0] == 0o040755
    assert set(files) == {"init", "dev", "proc", "sys", "newroot"}


def test_kernel_config_arguments_and_lost_options() -> None:
    args = kernel_config.config_args()
    assert args[args.index("PVH") - 1] == "--enable"
    assert args[args.index("ACPI") - 1] == "--disable"
    assert args[args.index("SERIAL_8250_NR_UARTS") + 1] == "2"
    finished = "\n".join(f"CONFIG_{option}=y" for option in kernel_config.ENABLE)
    assert kernel_config.missing(finished) == []
    dropped = finished.replace("CONFIG_VIRTIO_NET=y", "# CONFIG_VIRTIO_NET is not set")
    assert kernel_config.missing(dropped) == ["VIRTIO_NET"]
    assert kernel_config.missing(finished.replace("CONFIG_PVH=y", "CONFIG_PVH=m")) == ["PVH"]


def test_kernel_source_edits_apply_exactly_once() -> None:
    _, text, replacement = kernel_config.PATCHES[0]
    source = f"before\n\t\t{text}\nafter\n"
    assert kernel_config.patch(source, text, replacement).count("(void *)end, -1, what);") == 1
    with pytest.raises(ValueError, match="found it 0 times"):
        kernel_config.patch("changed upstream", text, replacement)
    with pytest.raises(ValueError, match="found it 2 times"):
        kernel_config.patch(source + source, text, replacement)


def test_missing_kernel_build_tools_are_named_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def require(tool: str) -> str:
        if tool in ("flex", "bison"):
            raise RuntimeNotAvailable("vm", f"{tool} is not installed")
        return f"/usr/bin/{tool}"

    monkeypatch.setattr(hosting, "require", require)
    monkeypatch.setattr(kernel, "LIBELF_HEADER", tmp_path / "gelf.h")
    with pytest.raises(RuntimeNotAvailable) as caught:
        kernel.require_tools()
    assert "flex, bison, libelf's headers" in str(caught.value)
    assert "apt-get install flex bison libelf-dev" in str(caught.value)
    (tmp_path / "gelf.h").write_text("")
    monkeypatch.setattr(hosting, "require", lambda tool: f"/usr/bin/{tool}")
    kernel.require_tools()


def test_kernel_build_progress_counts_compiled_files() -> None:
    said: list[str] = []
    compiled = kernel.Compiled(said.append, every=0.0)
    compiled.line("  CC      kernel/fork.o")
    compiled.line("  LD      vmlinux.o")
    compiled.line("  CC      mm/memory.o")
    assert compiled.files == 2
    assert said[-1].startswith(f"vm: building the guest kernel: 2 of about {kernel.FILES} files")


def _machine(**fields: object) -> qemu.Machine:
    base: dict[str, object] = {
        "kernel": Path("/k/vmlinux"),
        "initramfs": Path("/k/initrd"),
        "disks": (Path("/c/base.ext4"), Path("/c/service.ext4")),
        "host": TCG,
        "port": 8080,
        "host_port": 41234,
        "console": Path("/s/log"),
        "control": Path("/r/control.sock"),
        "qmp": Path("/r/qmp.sock"),
        "pidfile": Path("/r/qemu.pid"),
    }
    return qemu.Machine(**{**base, **fields})  # type: ignore[arg-type]


def test_cold_boot_argv() -> None:
    argv = qemu.argv(_machine())
    line = " ".join(argv)
    assert argv[0] == "qemu-system-x86_64"
    assert "-accel tcg" in line and "-enable-kvm" not in line
    assert "tsc_early_khz=2445406" in line
    assert "user,id=net,restrict=on,hostfwd=tcp:127.0.0.1:41234-:8080" in line
    assert "file=/c/base.ext4,format=raw,if=none,snapshot=on" in line
    assert "file,id=console,path=/s/log,append=on" in line
    assert "-incoming" not in argv and "memory-backend-file" not in line


def test_kvm_argv_has_no_tsc_hint() -> None:
    host = hosting.Host(accel="kvm", tsc_khz=1, why="test")
    line = " ".join(qemu.argv(_machine(host=host)))
    assert "-accel kvm -cpu host" in line and "tsc_early_khz" not in line


def test_restore_argv_maps_the_ram_file_private_and_defers_the_state() -> None:
    argv = qemu.argv(
        _machine(ram_file=Path("/snap/ram"), ram_shared=False, incoming_fd=7, disk_format="qcow2")
    )
    line = " ".join(argv)
    assert "mem-path=/snap/ram,share=off" in line and "memory-backend=ram" in line
    assert argv[-2:] == ["-incoming", "defer"]
    maker = " ".join(qemu.argv(_machine(ram_file=Path("/snap/ram"), ram_shared=True)))
    assert "share=on" in maker


def test_resources_map_to_memory_and_vcpus() -> None:
    assert qemu.memory_mib(None) == qemu.DEFAULT_MEMORY_MIB
    assert qemu.memory_mib(64 << 20) == qemu.MIN_MEMORY_MIB
    assert qemu.memory_mib(512 << 20) == 512
    assert (qemu.vcpus(None), qemu.vcpus(0.5), qemu.vcpus(2.0), qemu.vcpus(2.5)) == (1, 1, 2, 3)


def test_folder_hash_follows_content_and_skips_caches(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)\n")
    first = baking.folder_hash(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "app.pyc").write_bytes(b"x")
    assert baking.folder_hash(tmp_path) == first
    (tmp_path / "app.py").write_text("print(2)\n")
    assert baking.folder_hash(tmp_path) != first


def test_ext4_size_leaves_room() -> None:
    assert baking.ext4_size(0, 0) == 32
    assert baking.ext4_size(100 << 20, 64 << 20) == 195


def test_service_config_bakes_port_but_not_per_instance_env() -> None:
    inputs = baking.ServiceInputs(
        name="web",
        build=None,
        command=("python3", "app.py"),
        env={"A": "1", "SHOAL_INSTANCE": "3", "SHOAL_STATE": "/x"},
        port=8080,
    )
    config = inputs.config()
    env = config["env"]
    assert isinstance(env, dict)
    assert env["A"] == "1" and env["PORT"] == "8080" and "SHOAL_INSTANCE" not in env
    assert config["workdir"] == "/srv/app"
    json.dumps(config)


def test_guest_init_settings_are_nul_separated_files() -> None:
    inputs = baking.ServiceInputs(
        name="web",
        build=None,
        command=("python3", "-c", "print('a b')"),
        env={"A": "x=y", "SHOAL_INSTANCE": "3"},
        port=8080,
        grace=2.5,
    )
    files = inputs.settings()
    assert files["argv"] == b"python3\x00-c\x00print('a b')\x00"
    env = files["env"].split(b"\x00")
    assert env[-1] == b"" and b"A=x=y" in env and b"PORT=8080" in env
    assert not any(entry.startswith(b"SHOAL_INSTANCE=") for entry in env)
    assert files["port"] == b"8080" and files["grace"] == b"2.5"
    assert baking.ServiceInputs(name="w", build=None, command=("x",)).settings()["port"] == b"0"


def _elf_with_notes(*notes: tuple[bytes, int]) -> bytes:
    body = b""
    for name, kind in notes:
        padded = name + b"\x00" * (-len(name) % 4)
        body += struct.pack("<III", len(name), 4, kind) + padded + b"\x01\x02\x03\x04"
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", header, 0x20, 64)  # program headers right after the ELF header
    struct.pack_into("<HH", header, 0x36, 56, 1)
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(body), len(body), 4)
    return bytes(header) + phdr + body


def test_pvh_entry_note_is_recognised() -> None:
    assert vmlinux.has_pvh_entry(_elf_with_notes((b"GNU\x00", 3), (b"Xen\x00", 18)))
    assert not vmlinux.has_pvh_entry(_elf_with_notes((b"Xen\x00", 17), (b"GNU\x00", 18)))
    assert not vmlinux.has_pvh_entry(b"MZ not an ELF file at all")


def test_prepare_and_start_compute_the_same_inputs(tmp_path: Path) -> None:
    (tmp_path / "vmapp").mkdir()
    (tmp_path / "shoal.yaml").write_text(
        "name: demo\nservices:\n  web:\n    runtime: vm\n    command: [python3, app.py]\n"
        "    build: ./vmapp\n    env: {A: '1'}\n"
    )
    project = load_manifest(tmp_path / "shoal.yaml")
    service = project.manifest.services["web"]
    spec = InstanceSpec(
        app="demo",
        kind="service",
        name="web",
        ordinal=2,
        revision="r",
        command=("python3", "app.py"),
        env={
            "A": "1",
            "SHOAL_APP": "demo",
            "SHOAL_SERVICE": "web",
            "SHOAL_INSTANCE": "2",
            "SHOAL_STATE": "/s",
            "PORT": "8080",
        },
        port=8080,
        limits=Limits(),
        stop_grace=service.stop_grace_period,
        log_path=tmp_path / "log",
        build=tmp_path / "vmapp",
    )
    assert inputs_of(spec).config() == inputs_of_service(project, "web", service).config()


def test_exit_descriptions() -> None:
    assert describe(0, ("exit", 3)).code == 3
    assert describe(0, ("signal", 15)).signal == 15
    assert describe(-9, None).reason == "VM killed by SIGKILL"
    assert describe(None, None).code is None
    assert "qemu exited with code 0" in describe(0, None).reason


def test_the_cache_is_private(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)
    baking.Baker(cache)._make_cache()
    assert cache.stat().st_mode & 0o777 == 0o700


def _ext4_like(path: Path, uuid: bytes) -> Path:
    path.write_bytes(b"\x00" * (1024 + 0x68) + uuid + b"\x00" * 64)
    return path


def test_a_new_snapshot_prunes_its_services_older_ones(tmp_path: Path) -> None:
    snapshots = Snapshots(tmp_path)
    disk = _ext4_like(tmp_path / "service.ext4", b"u" * 16)
    disks = {str(disk): snapshot_disk_identity(disk)}
    for key, owner in (("old", "shop/web"), ("new", "shop/web"), ("other", "shop/api")):
        folder = snapshots.folder / key
        folder.mkdir(parents=True)
        (folder / "ram").write_bytes(b"x")
        meta = {"key": key, "owner": owner, "disks": disks}
        (folder / "complete").write_text(json.dumps(meta))
    (snapshots.folder / ".make-half").mkdir()
    assert snapshots.prune("shop/web", keep="new") == ["old"]
    assert sorted(p.name for p in snapshots.folder.iterdir()) == [".make-half", "new", "other"]
    assert snapshots.find("new", memory_mib=256, cpus=1) is not None
    assert snapshots.find("old", memory_mib=256, cpus=1) is None


def test_a_service_keeps_only_its_most_recently_used_disks(tmp_path: Path) -> None:
    baker = baking.Baker(tmp_path)
    web = baking.ServiceInputs(name="web", build=None, command=("x",), env={"SHOAL_APP": "a"})
    other = baking.ServiceInputs(name="web", build=None, command=("x",), env={"SHOAL_APP": "b"})
    assert web.owner != other.owner
    disks = [tmp_path / f"service-{web.owner}-{n}.ext4" for n in range(5)]
    for age, disk in enumerate(disks):
        disk.write_bytes(b"")
        os.utime(disk, ns=(age * 10**9, age * 10**9))
    os.utime(disks[0], ns=(10**10, 10**10))  # the oldest bake, reused last
    foreign = tmp_path / f"service-{other.owner}-0.ext4"
    foreign.write_bytes(b"")
    legacy = tmp_path / "service-0123456789abcdef.ext4"  # an earlier naming: no owner
    legacy.write_bytes(b"")
    removed = baker.prune_services(web.owner)
    assert sorted(removed) == sorted([disks[1], disks[2]])
    assert all(disk.exists() for disk in (disks[0], disks[3], disks[4], foreign))
    assert not legacy.exists()


def test_a_new_guest_init_or_base_replaces_the_older_ones_in_the_cache(tmp_path: Path) -> None:
    baker = baking.Baker(tmp_path)
    for name in ("init-old", "init-new", "kernel-k"):
        (tmp_path / name).mkdir()
    for name in ("base-old.ext4", "base-new.ext4"):
        (tmp_path / name).touch()
    (tmp_path / "init-old" / "init").write_bytes(b"x")
    said: list[str] = []
    baker._remove_others("init-*", tmp_path / "init-new", "guest init", said.append)
    baker._remove_others("base-*.ext4", tmp_path / "base-new.ext4", "base", said.append)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["base-new.ext4", "init-new", "kernel-k"]
    assert said == [
        "vm: removed an older guest init (init-old)",
        "vm: removed an older base (base-old.ext4)",
    ]


def test_a_snapshot_is_not_restored_onto_a_disk_baked_again(tmp_path: Path) -> None:
    """A pruned service disk baked again has the same name but a new filesystem (new UUID): the
    snapshot's overlays and guest page cache belong to the old one, so it is not used."""
    snapshots = Snapshots(tmp_path)
    disk = _ext4_like(tmp_path / "service.ext4", b"a" * 16)
    folder = snapshots.folder / "k"
    folder.mkdir(parents=True)
    meta = {"key": "k", "owner": "o", "disks": {str(disk): snapshot_disk_identity(disk)}}
    (folder / "complete").write_text(json.dumps(meta))
    assert snapshots.find("k", memory_mib=256, cpus=1) is not None
    _ext4_like(disk, b"b" * 16)
    assert snapshots.find("k", memory_mib=256, cpus=1) is None
    disk.unlink()
    assert snapshots.find("k", memory_mib=256, cpus=1) is None
    (folder / "complete").write_text(json.dumps({"key": "k", "owner": "o"}))  # made before
    assert snapshots.find("k", memory_mib=256, cpus=1) is None  # disks were recorded


@pytest.mark.asyncio
async def test_a_gcc_without_static_libc_names_libc6_dev(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    gcc = tools / "gcc"
    gcc.write_text('#!/bin/sh\n[ "$1" = -print-file-name=libc.a ] && echo libc.a\n')
    gcc.chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    with pytest.raises(RuntimeNotAvailable, match="apt-get install libc6-dev"):
        await baking.Baker(tmp_path / "cache").guest_init()


def test_a_taken_standby_is_found_by_its_identity_file_and_an_untaken_one_is_an_orphan(
    tmp_path: Path,
) -> None:
    taken, untaken, gone = tmp_path / "taken", tmp_path / "untaken", tmp_path / "gone"
    taken.mkdir()
    untaken.mkdir()
    (taken / standbys.IDENTITY_FILE).write_text(
        "SHOAL_STATE=/s\nSHOAL_SERVICE=web\nSHOAL_INSTANCE=2\n"
    )
    runs = {10: str(taken), 11: str(untaken), 12: str(gone)}
    web = {"SHOAL_STATE": "/s", "SHOAL_SERVICE": "web"}
    assert standbys.find({**web, "SHOAL_INSTANCE": "2"}, runs) == [10]
    assert standbys.find({**web, "SHOAL_INSTANCE": "3"}, runs) == []
    assert standbys.find({**web, "SHOAL_INSTANCE": "2", "SHOAL_STATE": "/t"}, runs) == []
    # never taken (no identity; a folder gone counts alike), and not this runtime's own
    assert standbys.orphans(runs, mine=set()) == [11, 12]
    assert standbys.orphans(runs, mine={11}) == [12]


def test_a_standby_forwards_no_port_and_names_what_a_take_over_changes() -> None:
    """A standby's argv forwards no port (``hostfwd_add`` adds it at take-over) and gives the
    netdev and console the ids the take-over names."""
    machine = qemu.Machine(
        kernel=Path("/k"),
        initramfs=Path("/i"),
        disks=(Path("/r"), Path("/s")),
        host=hosting.Host(accel="tcg", tsc_khz=1000, why="test"),
        port=8080,
        host_port=None,
        console=Path("/run/qemu.log"),
        control=Path("/run/c"),
        qmp=Path("/run/q"),
        pidfile=Path("/run/p"),
        incoming_fd=7,
    )
    args = qemu.argv(machine)
    netdev = args[args.index("-netdev") + 1]
    assert netdev == f"user,id={qemu.NETDEV},restrict=on"
    assert f"file,id={qemu.CONSOLE},path=/run/qemu.log,append=on" in args
    assert args[-2:] == ["-incoming", "defer"]
