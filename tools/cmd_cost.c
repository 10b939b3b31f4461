/* cmd_cost.c — `dsv4ref cost` (not yet implemented). */
#include <stdio.h>
#include "cli.h"

int cmd_cost(int argc, char **argv)
{
    (void)argv;
    if (cli_wants_help(argc, argv)) { printf("usage: dsv4ref cost ... (not yet implemented)\n"); return EXIT_OK; }
    fprintf(stderr, "dsv4ref cost: not implemented yet\n");
    return EXIT_BAD_INPUT;
}
