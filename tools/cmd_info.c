/* cmd_info.c — `dsv4ref info` (not yet implemented). */
#include <stdio.h>
#include "cli.h"

int cmd_info(int argc, char **argv)
{
    (void)argv;
    if (cli_wants_help(argc, argv)) { printf("usage: dsv4ref info ... (not yet implemented)\n"); return EXIT_OK; }
    fprintf(stderr, "dsv4ref info: not implemented yet\n");
    return EXIT_BAD_INPUT;
}
