/*
 * kiln sample: a tiny HTTP server in C, built as a static binary (musl-gcc -static) so it runs on
 * kiln's shell-free run image with nothing else. Answers every request with a fixed text on $PORT
 * (default 8080). Build: ./build.sh (the binary is not committed).
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char reply[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 31\r\n"
    "Connection: close\r\n"
    "\r\n"
    "Hello from kiln: static-binary\n";

int main(void) {
  const char *env = getenv("PORT");
  int port = env && *env ? atoi(env) : 8080;
  signal(SIGPIPE, SIG_IGN);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) { perror("socket"); return 1; }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("bind"); return 1; }
  if (listen(fd, 16) < 0) { perror("listen"); return 1; }
  printf("static-binary listening on %d\n", port);
  fflush(stdout);
  for (;;) {
    int c = accept(fd, NULL, NULL);
    if (c < 0) continue;
    char buf[4096];
    (void)read(c, buf, sizeof buf); /* the request is not inspected: every path gets the reply */
    (void)write(c, reply, sizeof reply - 1);
    close(c);
  }
}
