# dsv4ref — build ladder.  `make` alone prints this ladder (make help).
#
#   make            = make help
#   make ref        reference library + CLI (build/dsv4ref): plain C99, single-threaded
#   make run        build, then run the embedded tiny V4 model (needs only cc, make, zlib)
#   make test       install what the tests need if missing (cmocka, numpy), then run them all
#   make omp        the OpenMP kernel set (bit-identical to ref/; also part of every build)
#   make cuda       the CUDA kernel set (nvcc -arch=sm_90); skipped with a message without nvcc
#   make golden     regenerate golden/ (deterministic)
#   make bench      benchmarks (ratios measured side by side in one run)
#   make asan       the test suite under AddressSanitizer + UBSan
#   make ubsan      the test suite under UndefinedBehaviorSanitizer alone
#   make fuzz       short libFuzzer runs of every parser over the committed seed corpus
#   make clean
#
# Every backend, tool and test links the same library build/<variant>/libdsv4ref.a.

.DEFAULT_GOAL := help
SHELL := /bin/bash

CC      ?= cc
# Why each flag:
#   -std=c99 -pedantic     the reference is portable C99 (no extensions, no VLAs in headers)
#   -O2                    optimise, but nothing that changes results (no -ffast-math)
#   -ffp-contract=off      FMA contraction fuses a*b+c with ONE rounding instead of two:
#                          it changes results, so it is off everywhere (ref/, omp/, tests)
#   -fno-fast-math         explicit: IEEE semantics, NaN/Inf honoured, no reassociation
#   -fexcess-precision=standard  on x87-like targets, round every float op to its type
#   -Wall -Wextra -Werror  warnings are bugs in a reference
#   -Wpointer-arith        void-pointer arithmetic would stride by one byte
#   -Wshadow -Wvla         readability; no stack-size surprises from variable-length arrays
#   -D_POSIX_C_SOURCE      mmap, mkstemp, fileno, isatty
STD_FLAGS := -std=c99 -pedantic -ffp-contract=off -fno-fast-math -fexcess-precision=standard
WARN      := -Wall -Wextra -Werror -Wpointer-arith -Wshadow -Wvla -Wno-unused-parameter
DEFS      := -D_POSIX_C_SOURCE=200809L
OPT       ?= -O2 -g
CFLAGS_BASE = $(STD_FLAGS) $(WARN) $(DEFS) -Iref -Iomp
LDLIBS    := -lz -lm

# Variants: build/ref (plain), build/asan (ASan+UBSan), build/ubsan (UBSan only)
VARIANT   ?= ref
BUILD     := build/$(VARIANT)
ifeq ($(VARIANT),asan)
  OPT     := -O1 -g -fno-omit-frame-pointer
  SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
endif
ifeq ($(VARIANT),ubsan)
  OPT     := -O1 -g
  SAN     := -fsanitize=undefined -fno-sanitize-recover=all
endif
CFLAGS    = $(CFLAGS_BASE) $(OPT) $(SAN)
LDFLAGS  += $(SAN) $(OMP_FLAGS)

# The OpenMP kernel set (omp/*.c, spec/backends.md) is part of EVERY build: the library,
# the CLI (--backend omp) and the tests (test_omp: bit-identity with ref/) all link it.
# gcc and clang ship their OpenMP runtime (libgomp / libomp), so `make run` still needs only
# cc, make and zlib; a compiler without OpenMP can build with OMP_FLAGS= (the omp kernels then
# run serially, same results; -Wno-unknown-pragmas is then added). omp/ is compiled with the same flags as ref/ (-ffp-contract=off,
# no fast-math: vectorization never reorders a sum) plus -fopenmp and OMP_OPT (-O3 in the
# plain build: vectorization across independent outputs). OMP_ARCH (e.g. -march=native) is
# empty by default for a portable binary; without FMA contraction it does not change results.
OMP_FLAGS ?= -fopenmp
OMP_OPT   ?= $(if $(SAN),,-O3)
OMP_ARCH  ?=

REF_SRC   := $(sort $(wildcard ref/*.c))
OMP_SRC   := $(sort $(wildcard omp/*.c))
TOOL_SRC  := $(sort $(wildcard tools/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
REF_OBJ   := $(REF_SRC:%.c=$(BUILD)/%.o)
OMP_OBJ   := $(OMP_SRC:omp/%.c=$(BUILD)/omp/%_omp.o)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB       := $(BUILD)/libdsv4ref.a
CLI       := $(BUILD)/dsv4ref

.PHONY: help ref all run test test-only test-deps omp cuda golden bench asan ubsan fuzz clean tests

help: ## this ladder
	@sed -n '2,16p' Makefile | sed 's/^# \{0,1\}//'

ref: $(CLI) build/dsv4ref ## reference library + CLI
all: ref tests

# build/dsv4ref is the CLI of the plain reference build (what the README and CI call)
build/dsv4ref: $(CLI)
	@if [ "$(VARIANT)" = ref ]; then ln -sf ref/dsv4ref build/dsv4ref; fi

$(BUILD)/%.o: %.c $(wildcard ref/*.h) $(wildcard tools/*.h) $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools -c $< -o $@

# omp objects are named <base>_omp.o: the library holds ref/linear.o AND omp/linear_omp.o, never
# two members of one name (`ar x` of a duplicate name extracts the wrong one).
$(BUILD)/omp/%_omp.o: omp/%.c $(wildcard ref/*.h) $(wildcard omp/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(OMP_OPT) $(OMP_ARCH) $(if $(OMP_FLAGS),$(OMP_FLAGS),-Wno-unknown-pragmas) -c $< -o $@

$(LIB): $(REF_OBJ) $(OMP_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(CLI): $(TOOL_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(LIB) $(LDLIBS)

# cmocka test runners: one binary per tests/test_<concept>.c
$(BUILD)/tests/%: tests/%.c $(LIB) $(wildcard tests/*.h) $(wildcard ref/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -Itools $(LDFLAGS) -o $@ $< $(LIB) -lcmocka $(LDLIBS)

tests: $(TEST_BIN) $(CLI) build/dsv4ref

run: ref ## run the embedded tiny V4 model
	./build/dsv4ref run

# make test = install missing test dependencies, build everything, run every runner
test: test-deps ## install test deps if missing, then run every test
	@$(MAKE) --no-print-directory test-only

test-deps:
	@bash tools/install-test-deps.sh

test-only: tests
	@BUILD=$(BUILD) bash tools/run-tests.sh

asan: ## test suite under ASan + UBSan
	@bash tools/install-test-deps.sh
	@$(MAKE) --no-print-directory VARIANT=asan test-only

ubsan: ## test suite under UBSan alone
	@bash tools/install-test-deps.sh
	@$(MAKE) --no-print-directory VARIANT=ubsan test-only

fuzz: ## short libFuzzer runs over the seed corpus (FUZZ_SECONDS per parser)
	@bash tests/fuzz/run.sh

omp: ## OpenMP kernel set (linked into every build; this target builds it and says so)
	@$(MAKE) --no-print-directory ref
	@echo "omp kernels: linked into $(CLI) (use --backend omp; OMP_NUM_THREADS sets the threads)"

cuda: ## CUDA kernel set (nvcc -arch=sm_90)
	@if command -v nvcc >/dev/null 2>&1; then \
	   if ls cuda/*.cu >/dev/null 2>&1; then $(MAKE) --no-print-directory -f cuda/Makefile; \
	   else echo "cuda/: no kernels yet"; fi; \
	 else echo "nvcc not found: skipping the CUDA build (install the CUDA Toolkit to build cuda/)"; fi

golden: ref ## regenerate golden/
	@bash tools/make-golden.sh

bench: ref ## benchmarks
	@bash tools/bench.sh

clean:
	rm -rf build
