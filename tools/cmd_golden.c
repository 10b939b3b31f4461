/* cmd_golden.c — `dsv4ref golden` (not yet implemented). */
#include <stdio.h>
#include "cli.h"

int cmd_golden(int argc, char **argv)
{
    (void)argv;
    if (cli_wants_help(argc, argv)) { printf("usage: dsv4ref golden ... (not yet implemented)\n"); return EXIT_OK; }
    fprintf(stderr, "dsv4ref golden: not implemented yet\n");
    return EXIT_BAD_INPUT;
}
