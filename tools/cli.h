/* cli.h — the commands of the dsv4ref CLI, one file each (tools/cmd_<name>.c).
 * Exit codes everywhere: 0 success, 1 a comparison failed, 2 bad input or usage. */
#ifndef DSV4_CLI_H
#define DSV4_CLI_H

enum { EXIT_OK = 0, EXIT_MISMATCH = 1, EXIT_BAD_INPUT = 2 };

int cmd_info(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_cost(int argc, char **argv);
int cmd_golden(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* "--help" or "-h" among argv[1..] */
int cli_wants_help(int argc, char **argv);

#endif
