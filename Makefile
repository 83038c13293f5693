# run: GPT-2 inference in C.  `make run` builds and generates, `make test` tests.
CC      ?= cc
PYTHON  ?= python3
PREFIX  ?= /usr/local
BINDIR   = $(PREFIX)/bin
DATADIR  = $(PREFIX)/share/run
MANDIR   = $(PREFIX)/share/man/man1

# -march=native where the compiler knows it (gcc, clang on x86), -mcpu=native on Apple arm64.
ARCH    := $(shell $(CC) -march=native -x c -E /dev/null >/dev/null 2>&1 && echo -march=native || echo -mcpu=native)
OPT     ?= -O2 $(ARCH)
WARN     = -std=c11 -Wall -Wextra -Wshadow -Wvla
CFLAGS  ?= $(OPT)
LDLIBS   = -lm -lpthread

# The model `run` loads when none is given on the command line.
DEFAULT_MODEL ?= models/model.bin
MODEL_DEFINE   = -DDEFAULT_MODEL='"$(DEFAULT_MODEL)"'

# make SANITIZE=1 ... : AddressSanitizer + UndefinedBehaviorSanitizer build.
ifeq ($(SANITIZE),1)
CFLAGS  = -O1 -g $(ARCH) -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif

SRC      = run.c tokenizer.c
HDR      = tokenizer.h
TESTBIN  = tests/build

.PHONY: all test test-hf test-arm64 fuzz fuzz-export bench bench-tokenizer install uninstall clean

all: run

# `make run` builds the binary and then generates from the default model; as a
# prerequisite of other targets `run` is just the binary.
DEMO = $(if $(filter run,$(MAKECMDGOALS)),./run $(DEFAULT_MODEL) -p "$(DEMO_PROMPT)" --echo -n 120 -t 0.8 --top-p 0.95 -v && echo,)
DEMO_PROMPT = It is a truth universally acknowledged
ifneq ($(filter run,$(MAKECMDGOALS)),)
.PHONY: run
endif
run: $(SRC) $(HDR)
	$(CC) $(CFLAGS) $(WARN) $(MODEL_DEFINE) -o $@ $(SRC) $(LDLIBS)
	$(DEMO)

$(TESTBIN)/test_tokenizer: tests/test_tokenizer.c tokenizer.c tokenizer.h
	@mkdir -p $(TESTBIN)
	$(CC) $(CFLAGS) $(WARN) -I. -o $@ tests/test_tokenizer.c tokenizer.c $(LDLIBS)

$(TESTBIN)/test_kernels: tests/test_kernels.c run.c tokenizer.c tokenizer.h
	@mkdir -p $(TESTBIN)
	$(CC) $(CFLAGS) $(WARN) -Wno-unused-function -I. -o $@ tests/test_kernels.c tokenizer.c $(LDLIBS)

$(TESTBIN)/test_head_roles: tests/test_head_roles.c run.c tokenizer.c tokenizer.h
	@mkdir -p $(TESTBIN)
	$(CC) $(CFLAGS) $(WARN) -Wno-unused-function -I. -o $@ tests/test_head_roles.c tokenizer.c $(LDLIBS)

# Fuzzing with libFuzzer (clang): make fuzz [FUZZ_SECONDS=60]
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS   = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_RUN      = -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
FUZZ_TOK      = $(TESTBIN)/fuzz-gpt2.tok

$(TESTBIN)/fuzz_checkpoint: tests/fuzz_checkpoint.c run.c tokenizer.c tokenizer.h
	@mkdir -p $(TESTBIN)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(WARN) -Wno-unused-function -I. -o $@ tests/fuzz_checkpoint.c tokenizer.c $(LDLIBS)
$(TESTBIN)/fuzz_tokenizer: tests/fuzz_tokenizer.c tokenizer.c tokenizer.h
	@mkdir -p $(TESTBIN)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(WARN) -I. -o $@ tests/fuzz_tokenizer.c tokenizer.c $(LDLIBS)
$(FUZZ_TOK): export.py tests/data/gpt2/vocab.json tests/data/gpt2/merges.txt
	@mkdir -p $(TESTBIN)
	$(PYTHON) export.py -q --tokenizer-only tests/data/gpt2 $@
fuzz: $(TESTBIN)/fuzz_checkpoint $(TESTBIN)/fuzz_tokenizer $(FUZZ_TOK)
	@mkdir -p $(TESTBIN)/fuzz-corpus/checkpoint $(TESTBIN)/fuzz-corpus/tokenizer $(TESTBIN)/fuzz-artifacts
	$(TESTBIN)/fuzz_checkpoint $(FUZZ_RUN) -artifact_prefix=$(TESTBIN)/fuzz-artifacts/checkpoint- \
	    $(TESTBIN)/fuzz-corpus/checkpoint tests/fuzz/checkpoint tests/fuzz/regressions/checkpoint
	FUZZ_TOKENIZER=$(FUZZ_TOK) $(TESTBIN)/fuzz_tokenizer $(FUZZ_RUN) -artifact_prefix=$(TESTBIN)/fuzz-artifacts/tokenizer- \
	    $(TESTBIN)/fuzz-corpus/tokenizer tests/fuzz/tokenizer tests/fuzz/regressions/tokenizer
	$(MAKE) fuzz-export

# export.py's parsers with atheris (in a venv of its own), FUZZ_SECONDS per target:
# make fuzz-export [FUZZ_SECONDS=60] [FUZZ_EXPORT_SECONDS=...] [FUZZ_EXPORT_TARGETS="config_json ..."]
FUZZ_VENV           = $(TESTBIN)/venv-fuzz
FUZZ_EXPORT_TARGETS = safetensors torch_zip torch_pickle shard_index config_json tokenizer_json vocab_merges tokenizer_config
FUZZ_EXPORT_SECONDS ?= $(FUZZ_SECONDS)
FUZZ_EXPORT_RUN     = -max_total_time=$(FUZZ_EXPORT_SECONDS) -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
                      -dict=tests/fuzz/export.dict
$(FUZZ_VENV)/ok:
	$(PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/pip install -q atheris==3.0.0
	touch $@
fuzz-export: $(FUZZ_VENV)/ok
	@mkdir -p $(TESTBIN)/fuzz-artifacts
	@set -e; for t in $(FUZZ_EXPORT_TARGETS); do \
	    mkdir -p $(TESTBIN)/fuzz-corpus/export-$$t; \
	    echo "== fuzz-export $$t"; \
	    $(FUZZ_VENV)/bin/python tests/fuzz_export.py $$t $(FUZZ_EXPORT_RUN) -artifact_prefix=$(TESTBIN)/fuzz-artifacts/export-$$t- \
	        $(TESTBIN)/fuzz-corpus/export-$$t tests/fuzz/export/$$t; \
	done

# The fuzzers' seeds and regression inputs, replayed once by any compiler in make test.
$(TESTBIN)/replay_checkpoint: tests/fuzz/replay.c tests/fuzz_checkpoint.c run.c tokenizer.c tokenizer.h
	@mkdir -p $(TESTBIN)
	$(CC) $(CFLAGS) $(WARN) -Wno-unused-function -I. -DREPLAY_DIRS='"tests/fuzz/checkpoint:tests/fuzz/regressions/checkpoint"' \
	    -o $@ tests/fuzz/replay.c tests/fuzz_checkpoint.c tokenizer.c $(LDLIBS)
$(TESTBIN)/replay_tokenizer: tests/fuzz/replay.c tests/fuzz_tokenizer.c tokenizer.c tokenizer.h
	@mkdir -p $(TESTBIN)
	$(CC) $(CFLAGS) $(WARN) -I. -DREPLAY_DIRS='"tests/fuzz/tokenizer:tests/fuzz/regressions/tokenizer"' \
	    -o $@ tests/fuzz/replay.c tests/fuzz_tokenizer.c tokenizer.c $(LDLIBS)

# For valgrind, which cannot decode AVX-512 (that -march=native emits where the
# machine has it): the same program for AVX2 at most (x86-64), or the baseline.
VG_ARCH := $(shell $(CC) -mavx2 -mfma -x c -E /dev/null >/dev/null 2>&1 && echo -mavx2 -mfma)
$(TESTBIN)/run-valgrind: $(SRC) $(HDR)
	@mkdir -p $(TESTBIN)
	$(CC) -O2 -g $(VG_ARCH) $(WARN) $(MODEL_DEFINE) -o $@ $(SRC) $(LDLIBS)

# The same kernel tests built without -march: on x86-64 the portable C paths.
$(TESTBIN)/test_kernels_baseline: tests/test_kernels.c run.c tokenizer.c tokenizer.h
	@mkdir -p $(TESTBIN)
	$(CC) $(filter-out $(ARCH),$(CFLAGS)) $(WARN) -Wno-unused-function -I. -o $@ tests/test_kernels.c tokenizer.c $(LDLIBS)

# The NEON kernels, cross-compiled and run under qemu (gcc-aarch64-linux-gnu, qemu-user).
test-arm64:
	@mkdir -p $(TESTBIN)
	aarch64-linux-gnu-gcc -O2 -static $(WARN) -Wno-unused-function -I. -o $(TESTBIN)/test_kernels_arm64 tests/test_kernels.c tokenizer.c $(LDLIBS)
	qemu-aarch64 $(TESTBIN)/test_kernels_arm64

TESTS = $(TESTBIN)/test_kernels $(TESTBIN)/test_kernels_baseline tests/test_tokenizer.py tests/test_export.py tests/test_export_tokenizer.py tests/test_engine.py tests/test_cli.py tests/test_attention.py tests/test_model.py tests/test_readme.py tests/test_contract.py tests/test_terminal.py tests/test_install.py \
        tests/test_export_families.py tests/test_families.py tests/test_tokenizer_families.py tests/test_chat.py tests/test_llama_families.py \
        tests/test_tokenizer_kinds.py tests/test_tokenizer_spm.py \
        $(TESTBIN)/replay_checkpoint $(TESTBIN)/replay_tokenizer tests/test_badinput.py tests/test_concurrency.py \
        tests/test_fuzz_export.py $(TESTBIN)/test_head_roles tests/test_views.py

test: run $(TESTBIN)/run-valgrind $(TESTBIN)/test_tokenizer $(TESTBIN)/test_head_roles $(TESTBIN)/test_kernels $(TESTBIN)/test_kernels_baseline $(TESTBIN)/replay_checkpoint $(TESTBIN)/replay_tokenizer $(FUZZ_TOK)
	$(PYTHON) tests/run_all.py $(TESTS)

# Reference checks against Hugging Face transformers / tokenizers / tiktoken, in a venv.
VENV = .venv-hf
$(VENV)/ok: tests/requirements-hf.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/requirements-hf.txt
	touch $@

HF_TESTS = tests/hf_tokenizer_parity.py tests/hf_export_refusals.py tests/hf_engine_parity.py tests/hf_attention_parity.py \
           tests/hf_family_parity.py tests/hf_tokenizer_families.py tests/hf_chat_templates.py tests/hf_llama_parity.py \
           tests/hf_tokenizer_kinds.py tests/hf_tokenizer_spm.py tests/hf_views_parity.py

test-hf: run $(TESTBIN)/test_tokenizer $(VENV)/ok
	$(VENV)/bin/python tests/run_all.py $(HF_TESTS)

BENCHBIN     = $(TESTBIN)/bench
BENCH_CFLAGS = -O2 $(ARCH) -std=c11 -Wall -Wextra -pthread
BENCH_ARGS  ?=

$(BENCHBIN)/bench_membw: tests/bench_membw.c
	@mkdir -p $(BENCHBIN)
	$(CC) $(BENCH_CFLAGS) -o $@ tests/bench_membw.c

$(BENCHBIN)/bench_flops: tests/bench_flops.c
	@mkdir -p $(BENCHBIN)
	$(CC) $(BENCH_CFLAGS) -o $@ tests/bench_flops.c

# Speed against transformers on the CPU, with this machine's limits.
# `make bench BENCH_ARGS=--quick` is the short version (124M only, 3 repetitions);
# the families' real shapes beside GPT-2 124M (issue 13):
#   make bench BENCH_ARGS="--models 124M,gpt-neo-125m,pythia-160m,opt-125m"
# and two builds of run against each other: BENCH_ARGS="--compare OTHER/run".
# The random-weight models are cached in $(BENCHBIN).
bench: run $(BENCHBIN)/bench_membw $(BENCHBIN)/bench_flops $(VENV)/ok
	$(VENV)/bin/python tests/bench.py $(BENCH_ARGS)

bench-tokenizer: $(TESTBIN)/test_tokenizer $(VENV)/ok
	$(VENV)/bin/python tests/bench_tokenizer.py

# make install [PREFIX=/usr/local] [DESTDIR=staging root]: run in $(BINDIR),
# built for any CPU of this architecture (no -march: on x86-64 the AVX2+FMA
# kernels are compiled for that target alone and chosen at start-up), with
# its default model in $(DATADIR); export.py as $(BINDIR)/run-export; man
# pages made from their --help in $(MANDIR). Install notes in
# $(DATADIR)/installed-dirs the directories it had to create, so that
# `make uninstall` with the same PREFIX and DESTDIR removes exactly those
# (when empty) along with the files.
INSTALL_BUILD = $(TESTBIN)/install
INSTALL_DIRS  = $(BINDIR) $(DATADIR) $(MANDIR)
INSTALL_NOTE  = $(DATADIR)/installed-dirs
INSTALLED     = $(BINDIR)/run $(BINDIR)/run-export $(DATADIR)/model.bin $(MANDIR)/run.1 $(MANDIR)/run-export.1

install:
	@mkdir -p $(INSTALL_BUILD)
	$(CC) $(filter-out $(ARCH),$(CFLAGS)) $(WARN) -DDEFAULT_MODEL='"$(DATADIR)/model.bin"' -o $(INSTALL_BUILD)/run $(SRC) $(LDLIBS)
	install -m 755 export.py $(INSTALL_BUILD)/run-export
	$(PYTHON) tests/gen_manpage.py $(INSTALL_BUILD)/run > $(INSTALL_BUILD)/run.1
	$(PYTHON) tests/gen_manpage.py $(INSTALL_BUILD)/run-export > $(INSTALL_BUILD)/run-export.1
	@created=; for d in $(INSTALL_DIRS); do \
	    while [ "$$d" != / ] && [ ! -d "$(DESTDIR)$$d" ]; do created="$$created $$d"; d=$$(dirname "$$d"); done; \
	done; \
	set -e; install -d $(addprefix $(DESTDIR),$(INSTALL_DIRS)); \
	{ cat "$(DESTDIR)$(INSTALL_NOTE)" 2>/dev/null || true; for d in $$created; do echo "$$d"; done; } \
	    | LC_ALL=C sort -u > "$(DESTDIR)$(INSTALL_NOTE).tmp"; \
	mv "$(DESTDIR)$(INSTALL_NOTE).tmp" "$(DESTDIR)$(INSTALL_NOTE)"
	install -m 755 $(INSTALL_BUILD)/run $(INSTALL_BUILD)/run-export $(DESTDIR)$(BINDIR)
	install -m 644 $(DEFAULT_MODEL) $(DESTDIR)$(DATADIR)/model.bin
	install -m 644 $(INSTALL_BUILD)/run.1 $(INSTALL_BUILD)/run-export.1 $(DESTDIR)$(MANDIR)

uninstall:
	@created=$$(LC_ALL=C sort -r "$(DESTDIR)$(INSTALL_NOTE)" 2>/dev/null || true); \
	echo "rm -f $(addprefix $(DESTDIR),$(INSTALLED) $(INSTALL_NOTE))"; \
	rm -f $(addprefix $(DESTDIR),$(INSTALLED) $(INSTALL_NOTE)); \
	for d in $(DATADIR) $$created; do \
	    if [ -d "$(DESTDIR)$$d" ] && rmdir "$(DESTDIR)$$d" 2>/dev/null; then echo "rmdir $(DESTDIR)$$d"; fi; \
	done

clean:
	rm -rf run $(TESTBIN)
