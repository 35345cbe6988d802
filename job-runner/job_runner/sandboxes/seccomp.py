"""The seccomp filter of the bwrap backends, compiled by libseccomp (issue 18).

Refused with EPERM: the kernel interfaces untrusted code has no use for and that
keep turning up in kernel exploits (io_uring, keyrings, ptrace, bpf, userfaultfd,
perf events), and new user namespaces (unshare or clone with CLONE_NEWUSER; clone3
gets ENOSYS, so libcs fall back to clone, whose flags a filter can see). bwrap loads
the program from `--seccomp FD` just before it executes the command.

libseccomp itself (libseccomp2, which apt depends on, so every Debian image has it) is
called through ctypes: the Python binding (python3-seccomp) is built for Debian's
python3, not the image's /usr/local/bin/python, and libseccomp is the kept library
that knows each architecture's syscall numbers.
"""

from __future__ import annotations

import ctypes
import os

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO = 0x00050000
EPERM, ENOSYS = 1, 38
SCMP_CMP_MASKED_EQ = 7
CLONE_NEWUSER = 0x10000000
REFUSED = (
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "add_key",
    "request_key",
    "keyctl",
    "ptrace",
    "bpf",
    "userfaultfd",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "open_by_handle_at",
)
_cache: dict[str, bytes] = {}


class SeccompUnavailable(Exception):
    """libseccomp is missing or refused the filter; the message says which."""


def _library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as error:
        raise SeccompUnavailable(
            f"libseccomp is not installed ({error}): apt-get install libseccomp2"
        ) from error
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    # The _array form: the variadic seccomp_rule_add_exact cannot take a struct
    # through ctypes portably.
    lib.seccomp_rule_add_exact_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_void_p,
    ]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def filter_program() -> bytes:
    """The compiled BPF program (struct sock_filter[]), as bwrap --seccomp reads it."""
    if "bpf" in _cache:
        return _cache["bpf"]
    lib = _library()

    class ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
        _fields_ = [
            ("arg", ctypes.c_uint),
            ("op", ctypes.c_int),
            ("datum_a", ctypes.c_uint64),
            ("datum_b", ctypes.c_uint64),
        ]

    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        deny = SCMP_ACT_ERRNO | EPERM
        for name in REFUSED:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number >= 0 and lib.seccomp_rule_add_exact_array(ctx, deny, number, 0, None):
                raise SeccompUnavailable(f"libseccomp refused a rule for {name}")
        newuser = ArgCmp(0, SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
        for name in ("unshare", "clone"):
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if lib.seccomp_rule_add_exact_array(ctx, deny, number, 1, ctypes.byref(newuser)):
                raise SeccompUnavailable(f"libseccomp refused the rule for {name}")
        clone3 = lib.seccomp_syscall_resolve_name(b"clone3")
        no_clone3 = SCMP_ACT_ERRNO | ENOSYS
        if clone3 >= 0 and lib.seccomp_rule_add_exact_array(ctx, no_clone3, clone3, 0, None):
            raise SeccompUnavailable("libseccomp refused the rule for clone3")
        read_fd, write_fd = os.pipe()
        try:
            if lib.seccomp_export_bpf(ctx, write_fd) != 0:
                raise SeccompUnavailable("libseccomp could not export the filter")
            os.close(write_fd)
            write_fd = -1
            with open(read_fd, "rb", closefd=False) as exported:
                _cache["bpf"] = exported.read()
        finally:
            for fd in (read_fd, write_fd):
                if fd >= 0:
                    os.close(fd)
    finally:
        lib.seccomp_release(ctx)
    return _cache["bpf"]


def filter_fd() -> int:
    """A fresh read-only fd holding the filter, for `bwrap --seccomp FD` (bwrap reads
    it whole, from the start): a memfd, so no file is left anywhere."""
    fd = os.memfd_create("job-runner-seccomp", os.MFD_CLOEXEC)
    os.write(fd, filter_program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
