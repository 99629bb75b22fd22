/*
 * kiln-gate: a sandbox's first process, started ahead of need (src/sandbox/standby.ts). kiln
 * spawns it with the run's stdio, puts it into the run's cgroup (memory and pids bounds) and sets
 * its OOM score while the previous buildpack process still runs, so that moving a process into a
 * cgroup (which waits for an RCU grace period, 10-25 ms on a loaded host) is off the next run's
 * path. It waits, blocked on a pipe only kiln holds, until kiln sends the command; nothing runs
 * before it is placed.
 *
 * Usage: kiln-gate FD
 *   Reads FD to end of file: the command's argv, each argument ended by a NUL byte. Closes FD,
 *   then execvp()s the command (PATH from its own environment). Nothing read (kiln discarded the
 *   standby or died): exits 125 without running anything. A message that is not whole (no final
 *   NUL, more than MAX_BYTES or MAX_ARGS): exits 125 too.
 *
 *   The message may start with directives, applied in their order before the exec: what the
 *   wrappers of a run's command line (`prlimit`, `nsenter --net=… -S U -G G`) would do, done here
 *   instead of exec'ing each of them (two execs fewer on every buildpack process's path; kiln
 *   translates them, src/sandbox/standby.ts gateMessage):
 *     +rlimit=RES:SOFT:HARD  setrlimit; RES one of nproc, nofile, fsize, data, as
 *     +netns=PATH            setns() into the network namespace PATH names (needs root)
 *     +ids=UID:GID           drop to these host ids: setgroups(0), setgid, setuid (never 0),
 *                            checked afterwards (no way back: real, effective and saved ids)
 *   The first argument not starting with '+' is the command. A directive that is malformed or
 *   fails exits 125 with one line and runs nothing (fail closed: never a command with fewer
 *   limits or another identity than kiln asked for).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_BYTES (1 << 20)
#define MAX_ARGS 65536

static int fail(const char *what, const char *arg) {
  fprintf(stderr, "kiln-gate: %s \"%s\"%s%s\n", what, arg, errno ? ": " : "", errno ? strerror(errno) : "");
  return 125;
}

/* A decimal number with nothing after it, at most max; -1 when it is not one. */
static long long number(const char *s, char **end, char stop, long long max) {
  if (*s < '0' || *s > '9') return -1;
  errno = 0;
  unsigned long long v = strtoull(s, end, 10);
  if (errno != 0 || **end != stop || v > (unsigned long long)max) return -1;
  return (long long)v;
}

static int rlimit_of(const char *name, size_t len) {
  static const struct {
    const char *name;
    int res;
  } known[] = {{"nproc", RLIMIT_NPROC}, {"nofile", RLIMIT_NOFILE}, {"fsize", RLIMIT_FSIZE},
               {"data", RLIMIT_DATA},   {"as", RLIMIT_AS}};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strlen(known[i].name) == len && memcmp(known[i].name, name, len) == 0) return known[i].res;
  return -1;
}

/* directive applies one "+…" argument; 0 when done, 125 (after a message) when not. */
static int directive(const char *d) {
  errno = 0;
  char *end = NULL;
  if (strncmp(d, "+rlimit=", 8) == 0) {
    const char *name = d + 8;
    const char *colon = strchr(name, ':');
    int res = colon ? rlimit_of(name, (size_t)(colon - name)) : -1;
    if (res < 0) return fail("unknown limit in", d);
    long long soft = number(colon + 1, &end, ':', LLONG_MAX);
    long long hard = soft < 0 ? -1 : number(end + 1, &end, '\0', LLONG_MAX);
    if (soft < 0 || hard < 0 || soft > hard) return fail("malformed", d);
    struct rlimit rl = {(rlim_t)soft, (rlim_t)hard};
    if (setrlimit(res, &rl) != 0) return fail("cannot apply", d);
    return 0;
  }
  if (strncmp(d, "+netns=", 7) == 0) {
    if (d[7] != '/') return fail("malformed", d);
    int fd = open(d + 7, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail("cannot open the network namespace of", d);
    int rc = setns(fd, CLONE_NEWNET);
    int saved = errno;
    close(fd);
    errno = saved;
    if (rc != 0) return fail("cannot enter the network namespace of", d);
    return 0;
  }
  if (strncmp(d, "+ids=", 5) == 0) {
    long long uid = number(d + 5, &end, ':', 0x7fffffff);
    long long gid = uid < 0 ? -1 : number(end + 1, &end, '\0', 0x7fffffff);
    if (uid <= 0 || gid <= 0) return fail("malformed (ids are positive)", d);
    if (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0 || setuid((uid_t)uid) != 0)
      return fail("cannot drop to", d);
    uid_t r, e, s;
    gid_t gr, ge, gs;
    if (getresuid(&r, &e, &s) != 0 || getresgid(&gr, &ge, &gs) != 0 || r != (uid_t)uid ||
        e != (uid_t)uid || s != (uid_t)uid || gr != (gid_t)gid || ge != (gid_t)gid ||
        gs != (gid_t)gid || getgroups(0, NULL) != 0) {
      errno = 0;
      return fail("did not end up as", d);
    }
    return 0;
  }
  return fail("unknown directive", d);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "kiln-gate: usage: kiln-gate FD\n");
    return 125;
  }
  char *end = NULL;
  long fd = strtol(argv[1], &end, 10);
  if (*end != '\0' || fd < 3 || fd > 1023) {
    fprintf(stderr, "kiln-gate: bad fd \"%s\"\n", argv[1]);
    return 125;
  }
  static char buf[MAX_BYTES];
  size_t len = 0;
  for (;;) {
    if (len == sizeof buf) return 125;
    ssize_t n = read((int)fd, buf + len, sizeof buf - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return 125;
    if (n == 0) break;
    len += (size_t)n;
  }
  close((int)fd);
  if (len == 0 || buf[len - 1] != '\0') return 125;
  static char *args[MAX_ARGS + 1];
  size_t count = 0;
  for (size_t at = 0; at < len; at += strlen(buf + at) + 1) {
    if (count == MAX_ARGS) return 125;
    args[count++] = buf + at;
  }
  args[count] = NULL;
  size_t first = 0;
  for (; first < count && args[first][0] == '+'; first++)
    if (directive(args[first]) != 0) return 125;
  if (first == count || args[first][0] == '\0') return 125;
  execvp(args[first], args + first);
  fprintf(stderr, "kiln-gate: cannot run %s: %s\n", args[first], strerror(errno));
  return 127;
}
