/* cmd_check.c — `dsv4ref check` (not yet implemented). */
#include <stdio.h>
#include "cli.h"

int cmd_check(int argc, char **argv)
{
    (void)argv;
    if (cli_wants_help(argc, argv)) { printf("usage: dsv4ref check ... (not yet implemented)\n"); return EXIT_OK; }
    fprintf(stderr, "dsv4ref check: not implemented yet\n");
    return EXIT_BAD_INPUT;
}
