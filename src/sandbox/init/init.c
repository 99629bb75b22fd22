/*
 * kiln-init: pid 1 of every sandbox, in place of bwrap's own init (bwrap --as-pid-1).
 *
 * Why: bwrap's init runs as the sandbox's uid and is dumpable, so a buildpack could open
 * /proc/1/mem for writing and rewrite the code of its sandbox's pid 1 (seccomp cannot tell that
 * open(2) from any other). This init first makes itself non-dumpable (PR_SET_DUMPABLE 0): its
 * /proc/1 files then belong to root, and opening /proc/1/mem (or ptrace, or /proc/1/environ)
 * needs CAP_SYS_PTRACE, which nothing in the sandbox has. Then it does what bwrap's init does:
 * runs the command as its child, reaps every orphan, and exits with the command's status (128 +
 * the signal when it was killed, as bwrap reports it). Signals sent to pid 1 (by kiln through the
 * namespace, or from inside) are forwarded to the command.
 *
 * Usage: kiln-init CMD [ARGS...]   (CMD looked up in PATH, like bwrap does)
 * An exec failure prints bwrap's own message ("bwrap: execvp CMD: ...", exit 1), which kiln
 * already reports as a sandbox setup error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "kiln-init: usage: kiln-init CMD [ARGS...]\n");
    return 125;
  }
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    fprintf(stderr, "kiln-init: cannot make pid 1 non-dumpable: %s\n", strerror(errno));
    return 125;
  }
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "kiln-init: fork: %s\n", strerror(errno));
    return 125;
  }
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    execvp(argv[1], argv + 1);
    fprintf(stderr, "bwrap: execvp %s: %s\n", argv[1], strerror(errno));
    _exit(1);
  }
  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(&all, &info);
    if (sig < 0) continue; /* EINTR */
    if (sig != SIGCHLD) {
      kill(child, sig);
      continue;
    }
    for (;;) {
      int status;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      if (pid != child) continue; /* an orphan reparented to pid 1: reaped */
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    }
  }
}
