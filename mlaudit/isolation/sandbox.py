"""The kernel layers that confine the model worker, applied in the forked child before it loads
anything the scan could not vouch for.

Each layer is applied on its own and recorded as in force or not, so a report says exactly what
protected the run. On Linux: ``network`` (a new user and network namespace: no interface but a
loopback that is down), ``filesystem`` (Landlock: reads only where Python, its libraries and the
model live, writes only in the worker's private temporary folder), ``exec`` (a seccomp filter
that makes ``execve``/``execveat`` fail with EPERM) and ``limits`` (address space, CPU time,
open files). Elsewhere only ``limits`` applies, beside the process boundary itself.

The kernel interfaces are called directly through ctypes. The maintained Python bindings for
seccomp (libseccomp's, pyseccomp) wrap the C library libseccomp, which is not installed
everywhere mlaudit runs, and no binding for Landlock is packaged in a maintained form; the
filter below is nine BPF instructions and Landlock three system calls, small enough to audit.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

LAYER_NAMES = ("process", "network", "filesystem", "exec", "limits")
_NOT_IN_FORCE = "not in force"

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWNS = 0x00020000
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18
_SHARED_MEMORY = Path("/dev/shm")  # noqa: S108 - the mount point replaced, never written
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

# Landlock (include/uapi/linux/landlock.h); the syscall numbers are the same on every arch.
_LANDLOCK_CREATE_RULESET, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI1_ALL = (1 << 13) - 1  # execute ... make_sym
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_ONLY_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2

# seccomp: (audit arch, execve, execveat) per machine; x86-64's x32 calls are refused whole.
_SECCOMP_ARCH = {
    "x86_64": (0xC000003E, 59, 322),
    "aarch64": (0xC00000B7, 221, 281),
}
_X32_SYSCALL_BIT = 0x40000000
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
_SECCOMP_RET_KILL_PROCESS, _SECCOMP_RET_ERRNO, _SECCOMP_RET_ALLOW = 0x80000000, 0x50000, 0x7FFF0000

# Read-only system locations dynamic loading and Python's start-up may touch; not $HOME, not /proc.
_SYSTEM_READ_PATHS = (
    "/usr", "/lib", "/lib64", "/lib32", "/etc/ld.so.cache", "/etc/localtime",
    "/proc/cpuinfo", "/proc/meminfo", "/sys/devices/system/cpu", "/sys/fs/cgroup",
    "/dev/null", "/dev/urandom",
)


@dataclass(frozen=True)
class Limits:
    """Resource limits for one worker: CPU seconds and address-space headroom in bytes."""

    cpu_s: int
    memory_bytes: int
    open_files: int = 1024


@dataclass(frozen=True)
class Confinement:
    """Which layers took effect in a worker, and why the others did not."""

    layers: dict[str, bool]
    notes: tuple[str, ...]

    def missing(self) -> list[str]:
        """Notes on the layers that are not in force (empty when every layer is)."""
        return [note for note in self.notes if f": {_NOT_IN_FORCE}" in note]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _failed(call: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{call}: {os.strerror(code)}")


def confine(read_paths: Iterable[Path], private_dir: Path, limits: Limits) -> Confinement:
    """Apply every layer this platform has to the calling process, which must be a freshly
    forked, single-threaded child (a multithreaded process cannot enter a user namespace)."""
    layers = {name: False for name in LAYER_NAMES}
    layers["process"] = True
    notes = ["process: a forked worker with a scrubbed environment, killed past its budget"]
    linux = sys.platform.startswith("linux")
    steps: list[tuple[str, Callable[[], str]]] = [
        ("network", _enter_namespaces),
        ("filesystem", lambda: _restrict_filesystem(read_paths, private_dir)),
        ("limits", lambda: _set_limits(limits)),
        ("exec", _forbid_exec),
    ]
    if linux:
        _libc().prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)  # the worker dies with the parent
    for name, step in steps:
        if not linux and name != "limits":
            notes.append(f"{name}: {_NOT_IN_FORCE} (Linux only, this is {sys.platform})")
            continue
        try:
            done = step()
        except (OSError, ValueError) as error:
            notes.append(f"{name}: {_NOT_IN_FORCE} ({error})")
        else:
            layers[name] = True
            notes.append(f"{name}: {done}")
    return Confinement(layers, tuple(notes))


def _enter_namespaces() -> str:
    """A new user namespace (mapping only our own ids) and, inside it, a new network namespace:
    the worker sees only a loopback interface that is down, so no connection can be made."""
    uid, gid = os.getuid(), os.getgid()
    if _libc().unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        raise _failed("unshare(CLONE_NEWUSER|CLONE_NEWNET)")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w", encoding="ascii") as handle:
            handle.write(text)
    return "new user and network namespaces: no interface but a loopback that is down"


def landlock_abi() -> int:
    """The Landlock ABI version the running kernel offers, 0 when it has none."""
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(
        _LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
        ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
    )
    return max(int(version), 0)


def _private_shared_memory(private_dir: Path) -> None:
    """A mount namespace whose /dev/shm is ``private_dir``: thread pools need POSIX semaphores,
    which live there, and a worker must not leave files in the machine's shared one."""
    libc = _libc()
    if libc.unshare(_CLONE_NEWNS) != 0:
        raise _failed("unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise _failed("mount(/, private)")
    target = str(_SHARED_MEMORY).encode()
    if libc.mount(str(private_dir).encode(), target, None, _MS_BIND, None) != 0:
        raise _failed(f"mount({private_dir} on {_SHARED_MEMORY})")


def _restrict_filesystem(read_paths: Iterable[Path], private_dir: Path) -> str:
    """Landlock: read where listed, read and write in ``private_dir`` (also seen as /dev/shm),
    execute nowhere."""
    abi = landlock_abi()
    if abi < 1:
        raise OSError(errno.ENOSYS, "the kernel has no Landlock")
    if _SHARED_MEMORY.is_dir():
        _private_shared_memory(private_dir)
    read_paths = list(read_paths)
    handled = _FS_ABI1_ALL | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    handled |= _FS_IOCTL_DEV if abi >= 5 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0
    attr = struct.pack("=QQQ", handled, 0, scoped) if abi >= 6 else struct.pack("=Q", handled)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ruleset = libc.syscall(
        _LANDLOCK_CREATE_RULESET, ctypes.c_char_p(attr), ctypes.c_size_t(len(attr)),
        ctypes.c_uint32(0),
    )
    if ruleset < 0:
        raise _failed("landlock_create_ruleset")
    try:
        readable = _FS_READ_FILE | _FS_READ_DIR
        writable = handled & ~_FS_EXECUTE
        for path in read_paths:
            _add_rule(libc, int(ruleset), path, readable)
        _add_rule(libc, int(ruleset), private_dir, writable)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _failed("prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise _failed("landlock_restrict_self")
    finally:
        os.close(int(ruleset))
    return (
        f"Landlock ABI {abi}: reads only under {len(read_paths)} paths (Python's, the model's, "
        "system libraries); writes only in a private temporary folder"
    )


def _add_rule(libc: ctypes.CDLL, ruleset: int, path: Path, access: int) -> None:
    try:
        descriptor = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a listed location this system does not have
    try:
        if not os.path.isdir(path):
            access &= _FILE_ONLY_RIGHTS
        rule = ctypes.create_string_buffer(struct.pack("=Qi", access, descriptor))
        if libc.syscall(
            _LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
            rule, ctypes.c_uint32(0),
        ) != 0:
            raise _failed(f"landlock_add_rule({path})")
    finally:
        os.close(descriptor)


def system_read_paths() -> tuple[Path, ...]:
    return tuple(Path(p) for p in _SYSTEM_READ_PATHS)


def _seccomp_program() -> bytes:
    """BPF: kill on a foreign architecture; execve, execveat (and x32 calls) fail with EPERM."""
    machine = platform.machine()
    if machine not in _SECCOMP_ARCH:
        raise ValueError(f"no seccomp filter for {machine}")
    arch, execve, execveat = _SECCOMP_ARCH[machine]
    deny = _SECCOMP_RET_ERRNO | errno.EPERM
    instructions = [
        (_BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (_BPF_JEQ_K, 1, 0, arch),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_KILL_PROCESS),
        (_BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        (_BPF_JGE_K, 3, 0, _X32_SYSCALL_BIT),
        (_BPF_JEQ_K, 2, 0, execve),
        (_BPF_JEQ_K, 1, 0, execveat),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
        (_BPF_RET_K, 0, 0, deny),
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in instructions)


def _forbid_exec() -> str:
    """No new programs: ``subprocess``, ``os.system`` and loky's workers all fail to start.
    Forked children inherit the filter, so threads and forks stay the only parallelism."""
    program = ctypes.create_string_buffer(_seccomp_program())
    fprog = _SockFprog(len(program.raw) // 8, ctypes.addressof(program))
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _failed("prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise _failed("prctl(PR_SET_SECCOMP)")
    return "seccomp filter: execve and execveat fail with EPERM"


def _current_address_space() -> int:
    """This process's virtual size in bytes (0 where /proc is not there to say)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _set_limits(limits: Limits) -> str:
    """Address space (what is mapped now plus the headroom), CPU seconds and open files."""
    import resource  # POSIX only: imported where used, so the module loads everywhere

    address_space = _current_address_space() + limits.memory_bytes
    _lower(resource.RLIMIT_AS, address_space)
    _lower(resource.RLIMIT_CPU, limits.cpu_s)
    _lower(resource.RLIMIT_NOFILE, limits.open_files)
    return (
        f"address space {address_space / 2**30:.1f} GiB, CPU {limits.cpu_s} s, "
        f"{limits.open_files} open files"
    )


def _lower(which: int, value: int) -> None:
    import resource

    _, hard = resource.getrlimit(which)
    ceiling = value if hard == resource.RLIM_INFINITY else min(value, hard)
    soft = ceiling
    if which == resource.RLIMIT_CPU:
        # SIGXCPU at the soft limit ends the worker; the hard limit (SIGKILL) backs it up.
        hard_value = ceiling + 5 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(which, (soft, hard_value))
        return
    resource.setrlimit(which, (soft, ceiling))
