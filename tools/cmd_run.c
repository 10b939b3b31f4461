/* cmd_run.c — `dsv4ref run` (not yet implemented). */
#include <stdio.h>
#include "cli.h"

int cmd_run(int argc, char **argv)
{
    (void)argv;
    if (cli_wants_help(argc, argv)) { printf("usage: dsv4ref run ... (not yet implemented)\n"); return EXIT_OK; }
    fprintf(stderr, "dsv4ref run: not implemented yet\n");
    return EXIT_BAD_INPUT;
}
