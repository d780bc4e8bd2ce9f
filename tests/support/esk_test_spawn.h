/* Test and bench support: child processes that die with the test.
 * No Criterion: the benches link it. */
#ifndef ESK_TEST_SPAWN_H
#define ESK_TEST_SPAWN_H

#include <sys/types.h>


/**
 * @brief Starts the binary argv[0] with @p argv as a child process, its
 *        stdout and stderr appended to @p log, stdin closed. The caller waits
 *        for it (waitpid); it is killed if the calling thread's process ends
 *        first (a failed assertion). @returns its pid, or -1 when fork failed.
 */
pid_t esk_test_spawn(char *const argv[], const char *log);

#endif
