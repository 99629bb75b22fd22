/*
 * Seccomp probe for the sandbox tests, compiled static (musl-gcc) by seccomp.test.ts.
 *
 *   probe calls    tries every system call the filter denies (plus a few it must allow) with
 *                  harmless arguments and prints "NAME ERRNO" per call (0 = it succeeded);
 *   probe calls-without-ptrace   the same minus ptrace (for unfiltered control runs);
 *   probe int80    makes an i386 system call through int 0x80 (must kill the process);
 *   probe x32      makes an x32 system call (must kill the process);
 *
 * Arguments are chosen so that nothing happens even without the filter (NULL pointers, bad fds,
 * no-op flags); where a call would succeed unfiltered, the test sees the difference.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

/* Newer calls have one number on every architecture (since Linux 5.1); older musl lacks some. */
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_quotactl_fd
#define SYS_quotactl_fd 443
#endif
#ifndef SYS_set_mempolicy_home_node
#define SYS_set_mempolicy_home_node 450
#endif

static void report(const char *name, long rc) {
	printf("%s %d\n", name, rc == -1 ? errno : 0);
	fflush(stdout);
}

#define TRY(name, ...)                              \
	do {                                            \
		errno = 0;                                  \
		report(name, syscall(__VA_ARGS__));          \
	} while (0)

/* clone as fork: the child (if one is made) leaves at once. */
static void try_clone(const char *name, unsigned long flags) {
	errno = 0;
	long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0) _exit(0);
	if (pid > 0) waitpid((pid_t)pid, NULL, 0);
	report(name, pid < 0 ? -1 : 0);
}

static int calls(int with_ptrace) {
	char buf[8] = {0}, other[8] = {0};
	struct iovec local = {buf, 1}, remote = {other, 1};
	pid_t self = getpid();

	/* Unfiltered, these two stop pid 1 or make it our tracer and hang the sandbox: control runs skip them. */
	if (with_ptrace) {
		TRY("ptrace_attach_pid1", SYS_ptrace, 16 /* PTRACE_ATTACH */, 1, 0, 0);
		TRY("ptrace", SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0);
	}
	TRY("process_vm_readv", SYS_process_vm_readv, self, &local, 1, &remote, 1, 0);
	TRY("process_vm_writev", SYS_process_vm_writev, self, &local, 1, &remote, 1, 0);
	TRY("kcmp", SYS_kcmp, self, self, 0 /* KCMP_FILE */, 1, 1);
	TRY("pidfd_getfd", SYS_pidfd_getfd, -1, 0, 0);
	TRY("process_madvise", SYS_process_madvise, -1, NULL, 0, 0, 0);
	TRY("bpf", SYS_bpf, 0xffff, NULL, 0);
	TRY("perf_event_open", SYS_perf_event_open, NULL, 0, -1, -1, 0);
	TRY("userfaultfd", SYS_userfaultfd, 0xffffffff);
	TRY("keyctl", SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0);
	TRY("add_key", SYS_add_key, NULL, NULL, NULL, 0, 0);
	TRY("request_key", SYS_request_key, NULL, NULL, NULL, 0);
	TRY("io_uring_setup", SYS_io_uring_setup, 0, NULL);
	TRY("io_uring_enter", SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0);
	TRY("io_uring_register", SYS_io_uring_register, -1, 0, NULL, 0);
	TRY("lookup_dcookie", SYS_lookup_dcookie, 0, NULL, 0);
	TRY("fanotify_init", SYS_fanotify_init, 0xffffffff, 0);
	TRY("nfsservctl", SYS_nfsservctl, 0, NULL, NULL);
#ifdef SYS_uselib
	TRY("uselib", SYS_uselib, NULL);
#endif
#ifdef SYS__sysctl
	TRY("_sysctl", SYS__sysctl, NULL);
#endif
#ifdef SYS_sysfs
	TRY("sysfs", SYS_sysfs, 3, 0, 0);
#endif
#ifdef SYS_ustat
	TRY("ustat", SYS_ustat, 0, NULL);
#endif
#ifdef SYS_modify_ldt
	TRY("modify_ldt", SYS_modify_ldt, 0, buf, 0);
#endif
#ifdef SYS_iopl
	TRY("iopl", SYS_iopl, 0);
#endif
#ifdef SYS_ioperm
	TRY("ioperm", SYS_ioperm, 0, 0, 0);
#endif
	TRY("init_module", SYS_init_module, NULL, 0, "");
	TRY("finit_module", SYS_finit_module, -1, "", 0);
	TRY("delete_module", SYS_delete_module, "kiln-none", 0);
#ifdef SYS_create_module
	TRY("create_module", SYS_create_module, NULL, 0);
#endif
#ifdef SYS_get_kernel_syms
	TRY("get_kernel_syms", SYS_get_kernel_syms, NULL);
#endif
#ifdef SYS_query_module
	TRY("query_module", SYS_query_module, NULL, 0, NULL, 0, NULL);
#endif
	TRY("kexec_load", SYS_kexec_load, 0, 0, NULL, 0);
	TRY("kexec_file_load", SYS_kexec_file_load, -1, -1, 0, NULL, 0);
	TRY("mount", SYS_mount, NULL, NULL, NULL, 0, NULL);
	TRY("umount2", SYS_umount2, "/kiln-none", 0);
	TRY("pivot_root", SYS_pivot_root, NULL, NULL);
	TRY("chroot", SYS_chroot, NULL);
	TRY("unshare", SYS_unshare, 0);
	TRY("setns", SYS_setns, -1, 0);
	TRY("fsopen", SYS_fsopen, NULL, 0);
	TRY("fsconfig", SYS_fsconfig, -1, 0, NULL, NULL, 0);
	TRY("fsmount", SYS_fsmount, -1, 0, 0);
	TRY("fspick", SYS_fspick, -1, NULL, 0);
	TRY("move_mount", SYS_move_mount, -1, NULL, -1, NULL, 0);
	TRY("open_tree", SYS_open_tree, -1, NULL, 0);
	TRY("mount_setattr", SYS_mount_setattr, -1, NULL, 0, NULL, 0);
	TRY("open_by_handle_at", SYS_open_by_handle_at, -1, NULL, 0);
	TRY("name_to_handle_at", SYS_name_to_handle_at, -1, NULL, NULL, NULL, 0);
	TRY("sethostname", SYS_sethostname, NULL, 0);
	TRY("setdomainname", SYS_setdomainname, NULL, 0);
	TRY("reboot", SYS_reboot, 0, 0, 0, NULL);
	TRY("swapon", SYS_swapon, NULL, 0);
	TRY("swapoff", SYS_swapoff, NULL);
	TRY("acct", SYS_acct, NULL);
	TRY("syslog", SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
	TRY("quotactl", SYS_quotactl, 0, NULL, 0, NULL);
	TRY("quotactl_fd", SYS_quotactl_fd, -1, 0, 0, NULL);
	TRY("vhangup", SYS_vhangup);
	TRY("settimeofday", SYS_settimeofday, NULL, NULL);
	TRY("clock_settime", SYS_clock_settime, 0, NULL);
	TRY("clock_adjtime", SYS_clock_adjtime, 0, NULL);
	TRY("adjtimex", SYS_adjtimex, NULL);
	TRY("mbind", SYS_mbind, NULL, 0, 0, NULL, 0, 0);
	TRY("set_mempolicy", SYS_set_mempolicy, 0, NULL, 0);
	TRY("get_mempolicy", SYS_get_mempolicy, NULL, NULL, 0, NULL, 0);
	TRY("set_mempolicy_home_node", SYS_set_mempolicy_home_node, 0, 0, 0, 0);
	TRY("move_pages", SYS_move_pages, 0, 0, NULL, NULL, NULL, 0);
	TRY("migrate_pages", SYS_migrate_pages, 0, 0, NULL, NULL);

	/* clone with a namespace flag: one line per flag. */
	try_clone("clone_newns", 0x00020000);
	try_clone("clone_newcgroup", 0x02000000);
	try_clone("clone_newuts", 0x04000000);
	try_clone("clone_newipc", 0x08000000);
	try_clone("clone_newuser", 0x10000000);
	try_clone("clone_newpid", 0x20000000);
	try_clone("clone_newnet", 0x40000000);
	TRY("clone3", SYS_clone3, NULL, 0);

	/* Argument rules: low 32 bits decide, as the kernel reads an int. */
	TRY("ioctl_tiocsti", SYS_ioctl, -1, 0x5412, buf);
	TRY("ioctl_tiocsti_high", SYS_ioctl, -1, 0x100005412ul, buf);
	TRY("ioctl_tioclinux", SYS_ioctl, -1, 0x541c, buf);
	TRY("socket_vsock", SYS_socket, 40, 1, 0);
	TRY("socket_vsock_high", SYS_socket, 0x100000028ul, 1, 0);
	TRY("personality_addr_no_randomize", SYS_personality, 0x0040000);
	TRY("personality_read_implies_exec", SYS_personality, 0x0400000);
	TRY("personality_high", SYS_personality, 0x100000000ul);
	TRY("personality_bits_2_3", SYS_personality, 0x000000c);
	TRY("personality_bits_16_17", SYS_personality, 0x0030000);

	/* Numbers from 457 on (statmount, Linux 6.8, and later) were not reviewed: ENOSYS. */
	TRY("unreviewed_statmount", 457, NULL, NULL, 0, 0);
	TRY("unreviewed_mseal", 462, NULL, 0, 0);
	TRY("unreviewed_open_tree_attr", 467, -1, NULL, 0, NULL, 0);
	TRY("unreviewed_600", 600, 0);

	/* Allowed: these must not be EPERM. */
	TRY("ok_futex_requeue", 456, NULL, 0, 0, 0);
	try_clone("ok_fork", 0);
	TRY("ok_personality_query", SYS_personality, 0xffffffff);
	TRY("ok_personality_linux32", SYS_personality, 0x8);
	TRY("ok_personality_uname26_linux32", SYS_personality, 0x20008);
	TRY("ok_personality_uname26", SYS_personality, 0x20000);
	TRY("ok_personality_linux", SYS_personality, 0);
	TRY("ok_ioctl_tcgets", SYS_ioctl, -1, 0x5401, buf);
	TRY("ok_socket_unix", SYS_socket, 1, 1, 0);
	TRY("ok_getppid", SYS_getppid);
	return 0;
}

int main(int argc, char **argv) {
	const char *mode = argc > 1 ? argv[1] : "calls";
	if (strcmp(mode, "calls") == 0) return calls(1);
	if (strcmp(mode, "calls-without-ptrace") == 0) return calls(0);
#if defined(__x86_64__)
	if (strcmp(mode, "int80") == 0) {
		long ret;
		/* i386 getpid (20) through the 32-bit entry point. */
		__asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
		printf("int80 returned %ld\n", ret);
		return 0;
	}
	if (strcmp(mode, "x32") == 0) {
		long ret = syscall(0x40000000L | SYS_getpid);
		printf("x32 returned %ld errno %d\n", ret, errno);
		return 0;
	}
#endif
	printf("unsupported %s\n", mode);
	return 3;
}
