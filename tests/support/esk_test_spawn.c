/* Child processes that die with the test (esk_test_spawn.h). */
#include "esk_test_spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

pid_t esk_test_spawn(char *const argv[], const char *log) {
  fflush(NULL);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  /* dies with the test: a failed assertion ends the test before its cleanup,
   * and an orphaned daemon would keep consuming (and loading the machine) */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
  int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
  }
  int in = open("/dev/null", O_RDONLY);
  if (in >= 0) dup2(in, 0);
  execv(argv[0], argv);
  _exit(127);
}
