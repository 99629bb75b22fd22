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
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BYTES (1 << 20)
#define MAX_ARGS 65536

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
  if (args[0][0] == '\0') return 125;
  execvp(args[0], args);
  fprintf(stderr, "kiln-gate: cannot run %s: %s\n", args[0], strerror(errno));
  return 127;
}
