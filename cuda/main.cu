/* main.cu — build/cuda/dsv4ref: the reference CLI (tools/dsv4ref.c, its main renamed
 * dsv4ref_main) with `--backend cuda|ref` taken off the command line here.
 *   --backend cuda (the default of this binary): the hooked ref functions run on the GPU
 *                  (cuda/hooks.cu); no usable GPU -> a one-line error, exit 2.
 *   --backend ref  : the reference functions (same binary, for side-by-side runs).
 * DSV4_CUDA_STATS=1 prints the number of calls that reached each CUDA wrapper. */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "kernels.h"

extern "C" int dsv4ref_main(int argc, char **argv);
extern "C" int dsv4_cuda_enabled;

int main(int argc, char **argv)
{
    std::vector<char *> args;
    const char *backend = "cuda";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) { backend = argv[++i]; continue; }
        args.push_back(argv[i]);
    }
    if (strcmp(backend, "cuda") == 0) {
        const char *why;
        if (!cuda_available(&why)) {
            fprintf(stderr, "dsv4ref: --backend cuda: %s\n", why);
            return 2;
        }
        dsv4_cuda_enabled = 1;
    } else if (strcmp(backend, "ref") != 0) {
        fprintf(stderr, "dsv4ref: backend '%s' is not available in this build (cuda, ref)\n", backend);
        return 2;
    }
    args.push_back(NULL);
    int rc = dsv4ref_main((int)args.size() - 1, args.data());
    if (dsv4_cuda_enabled && getenv("DSV4_CUDA_STATS")) cuda_print_counts();
    return rc;
}
