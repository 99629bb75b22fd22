/*
 * kiln-mountview: runs a command (bwrap) in a user and mount namespace of its own in which every
 * directory the sandbox binds is first covered by an overlayfs of itself, so that inside the
 * sandbox /proc/self/mountinfo shows overlay roots ("/") instead of host paths. See
 * src/sandbox/mount-view.ts for why and how; this is its fast path (the shell fallback costs a
 * mount(8) exec per mount).
 *
 * Usage: kiln-mountview EMPTY_AT N [MODE SRC WORK]... CMD [ARGS...]
 *   EMPTY_AT  an existing directory no SRC is under: an empty tmpfs is mounted there (in this
 *             namespace only) as the overlays' empty lower layer
 *   MODE      "ro" (lowerdir=.:EMPTY) or "rw" (lowerdir=EMPTY,upperdir=.,workdir=../WORK)
 * Every mount failure is ignored (that source keeps its plain bind). The caller's uid and gid
 * map to 0 in the new user namespace. No fd it opens survives the exec.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "kiln-mountview: usage: kiln-mountview EMPTY_AT N [MODE SRC WORK]... CMD [ARGS...]\n");
    return 125;
  }
  char *end = NULL;
  long n = strtol(argv[2], &end, 10);
  if (*end != '\0' || n < 0 || 3 + 3 * n >= argc) {
    fprintf(stderr, "kiln-mountview: bad mount count \"%s\"\n", argv[2]);
    return 125;
  }
  char **cmd = argv + 3 + 3 * n;
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0) {
    char map[64];
    write_file("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
    int ok = write_file("/proc/self/uid_map", map) == 0;
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
    ok = ok && write_file("/proc/self/gid_map", map) == 0;
    int empty = -1;
    if (ok && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
        mount("kiln", argv[1], "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555") == 0)
      empty = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (long i = 0; empty >= 0 && i < n; i++) {
      const char *mode = argv[3 + 3 * i], *src = argv[4 + 3 * i], *work = argv[5 + 3 * i];
      char opts[512];
      int rw = strcmp(mode, "rw") == 0;
      if (rw)
        snprintf(opts, sizeof opts, "lowerdir=/proc/self/fd/%d,upperdir=.,workdir=../%s", empty, work);
      else
        snprintf(opts, sizeof opts, "lowerdir=.:/proc/self/fd/%d", empty);
      if (chdir(src) != 0) continue;
      mount("overlay", src, "overlay", rw ? 0 : MS_RDONLY, opts);
    }
    if (empty >= 0) close(empty);
  }
  /* Without namespaces (e.g. user namespaces disabled) the command runs as is: bwrap then
   * fails or succeeds on its own terms, with host paths visible. */
  if (chdir("/") != 0) return 125;
  execvp(cmd[0], cmd);
  fprintf(stderr, "kiln-mountview: cannot run %s\n", cmd[0]);
  return 127;
}
