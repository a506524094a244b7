"""Confining the device process: an OpenCL kernel is native code run inside it.

Owns: two Linux layers, each applied by a small cffi binding to the raw system calls (no
library), each one optional: where the kernel lacks a layer the caller gets a warning line, not
an error, and the other layer still holds.

- Landlock (`landlock`): which files the process may open, and how; which programs it may
  execute; no TCP bind/connect (ABI 4); no signals to processes outside it and no abstract unix
  sockets (ABI 6). Landlock restricts only the calling thread and the threads and processes it
  creates later (ABI 7 and older have no way to restrict the others), so it must be applied
  while the process has one thread: before numpy (OpenBLAS) and the OpenCL driver (its worker
  threads run the kernels) are loaded.
- seccomp-bpf (`seccomp`): system calls refused to every thread (TSYNC): making sockets,
  connecting, ptrace and other processes' memory, io_uring (whose operations seccomp does not
  see), signals to other processes, mounts, modules, BPF. Applied after set-up (the listening
  socket exists by then). x86_64 only: the table of numbers is that architecture's; elsewhere
  this layer is skipped with a warning.

Must never: be applied in a scheduler process (only the device process does,
scheduler/device_server.py), or fail silently.
"""

from __future__ import annotations

import os
import platform
import struct
import threading
from typing import Any

__all__ = ["landlock", "seccomp", "thread_count"]

_FFI: Any = None
_LIB: Any = None


def _ffi() -> tuple[Any, Any]:
    """cffi's view of libc's syscall() and prctl() and of the structures they take."""
    global _FFI, _LIB
    if _FFI is None:
        import cffi

        ffi = cffi.FFI()
        ffi.cdef("""
            long syscall(long number, ...);
            int prctl(int option, ...);
            struct landlock_ruleset_attr { uint64_t handled_access_fs; uint64_t handled_access_net;
                                           uint64_t scoped; };
            struct sock_filter { uint16_t code; uint8_t jt; uint8_t jf; uint32_t k; };
            struct sock_fprog { unsigned short len; struct sock_filter *filter; };
        """)
        ffi.cdef("struct landlock_path_beneath_attr { uint64_t allowed_access; int32_t parent_fd; };", packed=True)
        _FFI, _LIB = ffi, ffi.dlopen(None)
    return _FFI, _LIB


def _syscall(nr: int, *args: Any) -> int:
    """syscall(nr, args...): the result, or OSError with errno."""
    ffi, lib = _ffi()
    r = lib.syscall(nr, *args)
    if r < 0:
        e = ffi.errno
        raise OSError(e, os.strerror(e))
    return r


def _no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: required by both layers for a process without CAP_SYS_ADMIN, and
    what makes them unremovable (no setuid program can drop them)."""
    ffi, lib = _ffi()
    if lib.prctl(38, ffi.cast("unsigned long", 1), ffi.cast("unsigned long", 0), ffi.cast("unsigned long", 0),
                 ffi.cast("unsigned long", 0)) != 0:
        raise OSError(ffi.errno, os.strerror(ffi.errno))


def thread_count() -> int:
    """Threads of this process now (Landlock restricts only the caller and what it creates)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


# --- Landlock ------------------------------------------------------------------------------------

_CREATE, _ADD_RULE, _RESTRICT = 444, 445, 446  # the same numbers on every architecture
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR, MAKE_REG = 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # the rights a rule on a file may carry
READ = READ_FILE | READ_DIR
WRITE = READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SYM | REFER | TRUNCATE
DEVICE = READ | WRITE_FILE | IOCTL_DEV


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 if it has none (OSError's errno says why)."""
    ffi, _ = _ffi()
    return _syscall(_CREATE, ffi.NULL, ffi.cast("size_t", 0), ffi.cast("uint32_t", 1))


def landlock(rules: list[tuple[str, int]]) -> tuple[int, list[str]]:
    """Restrict this thread, and every thread and process it creates from now on, to the
    (path, rights) in `rules` (a right on a directory holds for everything below it; missing
    paths are skipped): every other path is refused every handled right. Returns (the ABI
    version used, warnings); ABI 0 and a warning where the kernel has no Landlock."""
    try:
        abi = landlock_abi()
    except OSError as e:
        return 0, [f"Landlock is not available ({e.strerror}): kernels may open any file the user can "
                   "and start programs"]
    ffi, _ = _ffi()
    handled = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        handled |= REFER
    if abi >= 3:
        handled |= TRUNCATE
    if abi >= 5:
        handled |= IOCTL_DEV
    attr = ffi.new("struct landlock_ruleset_attr *")
    attr.handled_access_fs = handled
    size = 8
    if abi >= 4:  # TCP bind and connect: handled, never allowed
        attr.handled_access_net = 0b11
        size = 16
    if abi >= 6:  # signals and abstract unix sockets outside the domain
        attr.scoped = 0b11
        size = 24
    warnings = []
    if thread_count() > 1:
        warnings.append(f"Landlock applied with {thread_count()} threads running: those made before are not "
                        "confined")
    ruleset = _syscall(_CREATE, attr, ffi.cast("size_t", size), ffi.cast("uint32_t", 0))
    try:
        beneath = ffi.new("struct landlock_path_beneath_attr *")
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
                beneath.allowed_access = rights & handled & (~0 if is_dir else _FILE_ONLY)
                beneath.parent_fd = fd
                if beneath.allowed_access:
                    _syscall(_ADD_RULE, ffi.cast("int", ruleset), ffi.cast("unsigned int", 1), beneath,
                             ffi.cast("uint32_t", 0))
            finally:
                os.close(fd)
        _no_new_privs()
        _syscall(_RESTRICT, ffi.cast("int", ruleset), ffi.cast("uint32_t", 0))
    finally:
        os.close(ruleset)
    return abi, warnings


def elf_interpreter(path: str) -> str | None:
    """The program interpreter (PT_INTERP) a dynamically linked ELF executable names, if any:
    executing the program opens it for execution too."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
                return None
            end = "<" if head[5] == 1 else ">"
            phoff, = struct.unpack_from(end + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):
                kind, _flags, offset, _va, _pa, size = struct.unpack_from(end + "IIQQQQ", table, i * phentsize)
                if kind == 3:  # PT_INTERP
                    f.seek(offset)
                    return f.read(size).rstrip(b"\0").decode()
    except (OSError, struct.error, UnicodeDecodeError):
        pass
    return None


# --- seccomp ---------------------------------------------------------------------------------------

_AUDIT_ARCH_X86_64 = 0xC000003E
_SECCOMP = 317
# x86_64 numbers of the calls refused with EPERM once set-up is done (checked against
# asm/unistd_64.h by tests/test_gpu.py where the header is installed)
DENIED_X86_64 = {
    "socket": 41, "connect": 42, "bind": 49, "listen": 50, "socketpair": 53, "ptrace": 101,
    "process_vm_readv": 310, "process_vm_writev": 311, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250,
    "add_key": 248, "request_key": 249, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "unshare": 272, "setns": 308, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442, "kexec_load": 246, "kexec_file_load": 320,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "reboot": 169, "swapon": 167,
    "swapoff": 168, "pidfd_getfd": 438, "pidfd_send_signal": 424, "process_madvise": 440,
    "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "iopl": 172, "ioperm": 173, "modify_ldt": 154, "acct": 163, "syslog": 103, "settimeofday": 164,
    "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305, "sethostname": 170, "setdomainname": 171,
    "quotactl": 179, "quotactl_fd": 443, "fanotify_init": 300, "vhangup": 153,
}
# signals: only to this process (argument 0 is the target pid / thread group)
SELF_ONLY_X86_64 = {"kill": 62, "tgkill": 234}
_TKILL = 200  # a thread id of any process: refused (glibc uses tgkill)
_EPERM = 1


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


def seccomp_program(pid: int) -> list[tuple[int, int, int, int]]:
    """The BPF filter: another architecture's calling convention (int 0x80) kills the process,
    x32 numbers and the DENIED calls fail with EPERM, kill/tgkill only reach process `pid`, the
    rest is allowed."""
    ld_w, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, ..JGE.., BPF_RET|BPF_K
    allow, errno, kill = 0x7FFF0000, 0x00050000 | _EPERM, 0x80000000
    prog = [_bpf(ld_w, 4), _bpf(jeq, _AUDIT_ARCH_X86_64, 1, 0), _bpf(ret, kill), _bpf(ld_w, 0),
            _bpf(jge, 0x40000000, 0, 1), _bpf(ret, errno)]
    for nr in sorted({*DENIED_X86_64.values(), _TKILL}):
        prog += [_bpf(jeq, nr, 0, 1), _bpf(ret, errno)]
    for nr in SELF_ONLY_X86_64.values():
        # if nr: load argument 0 (low 32 bits: pid_t is an int), allow only our own pid
        prog += [_bpf(jeq, nr, 0, 4), _bpf(ld_w, 16), _bpf(jeq, pid, 0, 1), _bpf(ret, allow), _bpf(ret, errno)]
    prog.append(_bpf(ret, allow))
    return prog


def seccomp() -> list[str]:
    """Install the filter on every thread of this process (SECCOMP_FILTER_FLAG_TSYNC). Returns
    warnings: the architecture is not x86_64, or the kernel has no seccomp filters."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return [f"seccomp filter not applied on {platform.machine()} (its system call table is x86_64's): "
                "kernels may make sockets and ptrace other processes"]
    ffi, _ = _ffi()
    insns = seccomp_program(os.getpid())
    filt = ffi.new("struct sock_filter[]", len(insns))
    for i, (code, jt, jf, k) in enumerate(insns):
        filt[i].code, filt[i].jt, filt[i].jf, filt[i].k = code, jt, jf, k
    fprog = ffi.new("struct sock_fprog *")
    fprog.len, fprog.filter = len(insns), filt
    try:
        _no_new_privs()
        # SECCOMP_SET_MODE_FILTER with SECCOMP_FILTER_FLAG_TSYNC
        r = _syscall(_SECCOMP, ffi.cast("unsigned int", 1), ffi.cast("unsigned int", 1), fprog)
    except OSError as e:
        return [f"seccomp filter not applied ({e.strerror}): kernels may make sockets and ptrace other processes"]
    if r != 0:
        return [f"seccomp filter not applied to thread {r}"]
    return []
