/*
 * kiln seccomp filter generator: writes the BPF program every sandboxed process runs under
 * (bwrap --seccomp FD) to the file named by argv[1], and a readable listing of it (libseccomp's
 * pseudo filter code) to argv[2] when given. Built and run by scripts/build.d/seccomp.sh; the
 * output is reproducible (same libseccomp, same bytes).
 *
 * Policy: allow by default, deny a list of system calls in the spirit of Docker's default
 * profile (which allows a list instead; the calls it only grants with capabilities are the ones
 * denied here, since a sandbox has no capabilities). Denied calls fail with EPERM, so programs
 * that probe for a feature fall back instead of dying. Why each group is here:
 *   - another process's memory or fds (ptrace and friends): a buildpack must not stop, read or
 *     steer the sandbox's pid 1 or a sibling process;
 *   - kernel attack surface no build needs (bpf, perf, userfaultfd, keyrings, io_uring, module
 *     loading, kexec, old i386-era calls): most kernel exploits start from one of these;
 *   - new mounts or namespaces (mount API, unshare, setns, clone with CLONE_NEW*): the sandbox's
 *     view of the filesystem and its namespaces are fixed by kiln;
 *   - host-wide state (clock, swap, reboot, quota, syslog, accounting, NUMA policy);
 *   - terminal input injection (ioctl TIOCSTI/TIOCLINUX) and AF_VSOCK sockets (they reach the
 *     hypervisor and are not isolated by network namespaces).
 * clone3 fails with ENOSYS instead: its flags live in memory a filter cannot read, and ENOSYS
 * makes glibc and others fall back to clone, whose flags are checked.
 *
 * System calls newer than this list (numbered FIRST_UNREVIEWED or higher: statmount, Linux 6.8,
 * and everything added since) fail with ENOSYS, as runc does for calls newer than a profile: a
 * deny list must not let new kernel attack surface in by default, and ENOSYS is what programs
 * already handle on older kernels. Those numbers are the same on both architectures (every
 * architecture shares one table from 424 on). A short hand-written BPF prefix does this, because
 * libseccomp only takes rules for calls it knows by name.
 *
 * Architectures: x86_64 and aarch64 in one program (the exported BPF checks AUDIT_ARCH first).
 * Any other ABI reaching the kernel — i386 through int 0x80, x32 on x86_64, arm32 on aarch64 —
 * kills the process: none of the rules above would apply to its syscall numbers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Values from the kernel's uapi headers, spelled out so the policy does not depend on them. */
#define KILN_CLONE_NEWNS 0x00020000u
#define KILN_CLONE_NEWCGROUP 0x02000000u
#define KILN_CLONE_NEWUTS 0x04000000u
#define KILN_CLONE_NEWIPC 0x08000000u
#define KILN_CLONE_NEWUSER 0x10000000u
#define KILN_CLONE_NEWPID 0x20000000u
#define KILN_CLONE_NEWNET 0x40000000u
#define KILN_TIOCSTI 0x5412u
#define KILN_TIOCLINUX 0x541Cu
#define KILN_AF_VSOCK 40u
/* The first system call number not reviewed for this filter (statmount, Linux 6.8). */
#define FIRST_UNREVIEWED 457u
/* x32 system calls on x86_64 carry this bit; libseccomp's program kills them. */
#define X32_SYSCALL_BIT 0x40000000u

static const char *const denied[] = {
	/* another process's memory, fds and state */
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
	/* kernel attack surface */
	"bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
	"io_uring_setup", "io_uring_enter", "io_uring_register", "lookup_dcookie", "fanotify_init",
	"uselib", "nfsservctl", "_sysctl", "sysfs", "ustat", "modify_ldt", "vm86", "vm86old",
	"iopl", "ioperm",
	/* kernel modules and kexec */
	"init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms",
	"query_module", "kexec_load", "kexec_file_load",
	/* mounts and namespaces */
	"mount", "umount", "umount2", "pivot_root", "chroot", "unshare", "setns", "fsopen", "fsconfig",
	"fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "open_by_handle_at",
	"name_to_handle_at", "sethostname", "setdomainname",
	/* host-wide state */
	"reboot", "swapon", "swapoff", "acct", "syslog", "quotactl", "quotactl_fd", "vhangup",
	"settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex",
	"mbind", "set_mempolicy", "get_mempolicy", "set_mempolicy_home_node", "move_pages",
	"migrate_pages",
};

/* personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26 alone and with PER_LINUX32,
 * and 0xffffffff (query). Everything else (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ...) is denied. */
#define PERSONA_OK_BITS ((1u << 3) | (1u << 17)) /* PER_LINUX32 = 0x8, UNAME26 = 0x20000 */

static void fail(const char *what, int rc) {
	fprintf(stderr, "kiln-seccomp: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
	exit(1);
}

static void deny(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
                 const struct scmp_arg_cmp *cmp) {
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR) {
		fprintf(stderr, "kiln-seccomp: libseccomp does not know the system call %s\n", name);
		exit(1);
	}
	/* i386-only calls (stime, umount, vm86, vm86old) exist on neither architecture: that ABI is
	 * killed as a whole, so a rule would only add dead comparisons. */
	if (seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, name) < 0 &&
	    seccomp_syscall_resolve_name_arch(SCMP_ARCH_AARCH64, name) < 0)
		return;
	int rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);
	if (rc != 0) fail(name, rc);
}

/*
 * The personality rule as a union of single comparisons (libseccomp allows one comparison per
 * argument in a rule). In 32 bits, a value is allowed iff it is 0, all ones, or a subset of
 * PERSONA_OK_BITS. Any other value has a run of one-bits whose top bit i is followed by a zero at
 * i+1 (cyclically): if i is not an allowed bit, "bit i set, bit i+1 clear" denies it; if every run
 * ends at an allowed bit, some run is longer than one bit (else the value is a subset), so "bits
 * i-1 and i set, bit i+1 clear" denies it. No pattern matches an allowed value. Values above 32 bits
 * are denied outright (the kernel would ignore those bits).
 */
static void deny_personality(scmp_filter_ctx ctx) {
	const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
	struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_GT, 0xffffffffull);
	deny(ctx, eperm, "personality", 1, &c);
	for (unsigned i = 0; i < 32; i++) {
		uint64_t top = 1ull << i, next = 1ull << ((i + 1) % 32), below = 1ull << ((i + 31) % 32);
		if ((PERSONA_OK_BITS & top) == 0) {
			c = (struct scmp_arg_cmp)SCMP_A0(SCMP_CMP_MASKED_EQ, top | next, top);
		} else {
			c = (struct scmp_arg_cmp)SCMP_A0(SCMP_CMP_MASKED_EQ, below | top | next, below | top);
		}
		deny(ctx, eperm, "personality", 1, &c);
	}
}

/*
 * The prefix run before libseccomp's program: x86_64 or aarch64 system calls numbered from
 * FIRST_UNREVIEWED up (below the x32 range) return ENOSYS; everything else falls through to
 * libseccomp's program, which checks the architecture again. Jumps are relative to the next
 * instruction, so prepending leaves libseccomp's own jumps intact.
 */
static const struct sock_filter unreviewed_prefix[] = {
	/* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
	/* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
	/* 2 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_AARCH64, 0, 4),
	/* 3 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	/* 4 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 2, 0),
	/* 5 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, FIRST_UNREVIEWED, 0, 1),
	/* 6 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
	/* 7: libseccomp's program */
};

static void write_all(int fd, const void *buf, size_t n, const char *what) {
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR) continue;
		if (w <= 0) fail(what, w < 0 ? errno : EIO);
		p += w;
		n -= (size_t)w;
	}
}

int main(int argc, char **argv) {
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: kiln-seccomp OUT.bpf [OUT.txt]\n");
		return 2;
	}
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (ctx == NULL) fail("seccomp_init", ENOMEM);
	int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (rc != 0) fail("bad-arch action", rc);
	/* bwrap sets NO_NEW_PRIVS itself; the exported program carries no such flag anyway. */
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (rc != 0) fail("no-new-privs attribute", rc);
	/* A binary tree of syscall numbers instead of a linear list: every allowed call is cheap. */
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	if (rc != 0) fail("optimize attribute", rc);
	const uint32_t arches[] = {SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64};
	for (size_t i = 0; i < sizeof arches / sizeof arches[0]; i++) {
		rc = seccomp_arch_add(ctx, arches[i]);
		if (rc != 0 && rc != -EEXIST) fail("seccomp_arch_add", rc);
	}

	const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
	for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) deny(ctx, eperm, denied[i], 0, NULL);

	/* Denying unshare alone leaves clone(CLONE_NEWUSER | ...): one rule per namespace flag. The flags
	 * are the first argument of clone on both architectures. */
	const uint64_t newns[] = {KILN_CLONE_NEWNS,  KILN_CLONE_NEWCGROUP, KILN_CLONE_NEWUTS, KILN_CLONE_NEWIPC,
	                          KILN_CLONE_NEWUSER, KILN_CLONE_NEWPID,    KILN_CLONE_NEWNET};
	for (size_t i = 0; i < sizeof newns / sizeof newns[0]; i++) {
		struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_MASKED_EQ, newns[i], newns[i]);
		deny(ctx, eperm, "clone", 1, &c);
	}
	deny(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL);

	/* ioctl's request and socket's family are 32-bit ints to the kernel: compare the low half only,
	 * so set high bits cannot slip past the rule. */
	const uint64_t ioctls[] = {KILN_TIOCSTI, KILN_TIOCLINUX};
	for (size_t i = 0; i < sizeof ioctls / sizeof ioctls[0]; i++) {
		struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffull, ioctls[i]);
		deny(ctx, eperm, "ioctl", 1, &c);
	}
	struct scmp_arg_cmp vsock = SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffull, KILN_AF_VSOCK);
	deny(ctx, eperm, "socket", 1, &vsock);

	deny_personality(ctx);

	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) fail(argv[1], errno);
	write_all(fd, unreviewed_prefix, sizeof unreviewed_prefix, argv[1]);
	rc = seccomp_export_bpf(ctx, fd);
	if (rc != 0) fail("seccomp_export_bpf", rc);
	if (close(fd) != 0) fail(argv[1], errno);
	if (argc == 3) {
		fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) fail(argv[2], errno);
		char head[256];
		int n = snprintf(head, sizeof head,
		                 "# kiln prefix (before the program below): x86_64 and aarch64 system calls\n"
		                 "# numbered %u to %u return ERRNO(%d) (ENOSYS)\n",
		                 FIRST_UNREVIEWED, X32_SYSCALL_BIT - 1, ENOSYS);
		write_all(fd, head, (size_t)n, argv[2]);
		rc = seccomp_export_pfc(ctx, fd);
		if (rc != 0) fail("seccomp_export_pfc", rc);
		if (close(fd) != 0) fail(argv[2], errno);
	}
	seccomp_release(ctx);
	return 0;
}
