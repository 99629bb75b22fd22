/*
 * Seccomp probe for arm64 programs run under qemu-user (arm64-binaries.test.ts), compiled static
 * with aarch64-linux-musl-gcc. It makes the denied calls that qemu-user passes on to the host
 * kernel (many others, e.g. bpf or keyctl, qemu answers itself with ENOSYS; raw clone and a NULL
 * settimeofday abort qemu 7.2, so test/sandbox/seccomp-probe.c cannot run emulated) with harmless
 * arguments (valid pointers: qemu refuses a bad one itself, EFAULT, before the kernel sees the call), and prints "NAME ERRNO" per call (0 = it succeeded). Unfiltered, each reaches the
 * kernel (0 or an argument error); filtered, each must be EPERM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *name, long rc) {
	printf("%s %d\n", name, rc == -1 ? errno : 0);
	fflush(stdout);
}

#define TRY(name, ...)                     \
	do {                                   \
		errno = 0;                         \
		report(name, syscall(__VA_ARGS__)); \
	} while (0)

int main(void) {
	pid_t self = getpid();
	struct {
		struct file_handle h;
		unsigned char bytes[128];
	} handle = {.h = {.handle_bytes = 128}};
	int mount_id = 0;
	TRY("unshare", SYS_unshare, 0);
	TRY("kcmp", SYS_kcmp, self, self, 0 /* KCMP_FILE */, 1, 1);
	TRY("umount2", SYS_umount2, "/nonexistent-kiln", 0);
	TRY("chroot", SYS_chroot, "/nonexistent-kiln");
	TRY("setns", SYS_setns, -1, 0);
	TRY("name_to_handle_at", SYS_name_to_handle_at, AT_FDCWD, "/nonexistent-kiln", &handle, &mount_id, 0);
	TRY("personality_addr_no_randomize", SYS_personality, 0x0040000);
	TRY("ok_getppid", SYS_getppid);
	TRY("ok_socket_unix", SYS_socket, 1, 1, 0);
	return 0;
}
