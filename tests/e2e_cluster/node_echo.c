/* The program of the node scenario's image (tests/e2e_cluster/node.rs),
 * built static with musl-gcc like the pause image. With arguments it prints
 * them, as echo does (for `kubectl exec`); without, it listens on TCP port
 * 8080 and answers every connection with "hello from HOSTNAME" (the pod's
 * name), logging each one. SIGTERM ends it (as PID 1 it would be ignored). */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static void stop(int signo) { _exit(0); }

int main(int argc, char **argv) {
  if (argc > 1) {
    for (int i = 1; i < argc; i++) printf("%s%s", argv[i], i + 1 < argc ? " " : "\n");
    return 0;
  }
  signal(SIGTERM, stop);
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  char answer[300];
  int length = snprintf(answer, sizeof answer, "hello from %s\n", host);
  int server = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(8080)};
  if (server < 0 || bind(server, (struct sockaddr *)&address, sizeof address) < 0 || listen(server, 16) < 0) {
    perror("listen on :8080");
    return 1;
  }
  printf("listening on :8080 as %s\n", host);
  fflush(stdout);
  for (;;) {
    int client = accept(server, NULL, NULL);
    if (client < 0) continue;
    /* MSG_NOSIGNAL: a probe that closes at once must not kill us with SIGPIPE. */
    if (send(client, answer, length, MSG_NOSIGNAL) == length) printf("answered a connection\n");
    fflush(stdout);
    close(client);
  }
}
