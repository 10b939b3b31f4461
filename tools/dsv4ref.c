/* dsv4ref.c — the command-line entry point: dispatches to tools/cmd_<name>.c. */
#include <stdio.h>
#include <string.h>
#include "cli.h"
#include "dsv4ref.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command k_commands[] = {
    { "run",     cmd_run,     "prefill + decode on a model (default: the embedded tiny V4 model)" },
    { "check",   cmd_check,   "run a golden file's model and schedule, compare every tap" },
    { "compare", cmd_compare, "compare two safetensors dumps with the tolerance table" },
    { "cost",    cmd_cost,    "FLOPs and KV bytes per decode token (V3.2 vs V4 claims)" },
    { "golden",  cmd_golden,  "write the golden suite" },
    { "bench",   cmd_bench,   "benchmarks" },
    { "info",    cmd_info,    "list a safetensors file's metadata and tensors" },
};

static void usage(FILE *f)
{
    fprintf(f, "dsv4ref %s — reference implementation of DeepSeek's attention lineage and V4\n\n"
               "usage: dsv4ref <command> [options]   (dsv4ref <command> --help)\n\ncommands:\n",
            DSV4REF_VERSION);
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        fprintf(f, "  %-8s %s\n", k_commands[i].name, k_commands[i].summary);
    fprintf(f, "\nexit status: 0 success, 1 a comparison failed, 2 bad input or usage\n");
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) { usage(stderr); return EXIT_BAD_INPUT; }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) { printf("dsv4ref %s\n", DSV4REF_VERSION); return EXIT_OK; }
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (strcmp(argv[1], k_commands[i].name) == 0) return k_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dsv4ref: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_BAD_INPUT;
}
