/* cmd_compare.c — `dsv4ref compare` (not yet implemented). */
#include <stdio.h>
#include "cli.h"

int cmd_compare(int argc, char **argv)
{
    (void)argv;
    if (cli_wants_help(argc, argv)) { printf("usage: dsv4ref compare ... (not yet implemented)\n"); return EXIT_OK; }
    fprintf(stderr, "dsv4ref compare: not implemented yet\n");
    return EXIT_BAD_INPUT;
}
