/* eskctl: entry points of the subcommands that live in their own files. */
#ifndef ESKCTL_H
#define ESKCTL_H

/** @brief `eskctl schemas ...`; argv[0] is "schemas". @returns the exit status. */
int eskctl_schemas_main(int argc, char **argv);

/** @brief `eskctl projection status ...`; argv[0] is "projection". @returns the exit status. */
int eskctl_projection_main(int argc, char **argv);

#endif
