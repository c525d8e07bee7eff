/* The program of the node scenario's image (tests/e2e_cluster/node.rs),
 * built static with musl-gcc like the pause image. Without arguments it
 * listens on TCP port 8080 and answers every connection with
 * "hello from HOSTNAME" (the pod's name), logging each one; SIGTERM ends it
 * (as PID 1 it would be ignored). For `kubectl exec`:
 * `--connect IP:PORT` connects (within 5 s) and prints what the peer sent
 * first, if anything, else "connected"; other arguments are printed, as
 * echo does. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void stop(int signo) { _exit(0); }

static int connect_to(char *target) {
  char *colon = strrchr(target, ':');
  struct sockaddr_in address = {.sin_family = AF_INET};
  if (!colon) return fprintf(stderr, "expected IP:PORT, got %s\n", target), 2;
  *colon = 0;
  address.sin_port = htons(atoi(colon + 1));
  if (inet_pton(AF_INET, target, &address.sin_addr) != 1) return fprintf(stderr, "not an IPv4 address: %s\n", target), 2;
  alarm(5);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&address, sizeof address) < 0) {
    perror("connect");
    return 1;
  }
  struct timeval wait = {.tv_sec = 1};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  char first[300];
  ssize_t n = read(s, first, sizeof first - 1);
  if (n > 0) {
    first[n] = 0;
    fputs(first, stdout);
  } else {
    puts("connected");
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--connect")) return connect_to(argv[2]);
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
