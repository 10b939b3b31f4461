/* cmd_bench.c — `dsv4ref bench` (not yet implemented). */
#include <stdio.h>
#include "cli.h"

int cmd_bench(int argc, char **argv)
{
    (void)argv;
    if (cli_wants_help(argc, argv)) { printf("usage: dsv4ref bench ... (not yet implemented)\n"); return EXIT_OK; }
    fprintf(stderr, "dsv4ref bench: not implemented yet\n");
    return EXIT_BAD_INPUT;
}
