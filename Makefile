# caramba: one static library (lib/), one thin executable per tool (cmd/).
#   make            build every tool into bin/
#   make test       install what is missing, build, run the tests, then again under ASan+UBSan
#   make test-fast  the tests once, without the sanitizer pass
#   make demo       the main job on the embedded default data
#   make deps       install the Debian packages caramba needs (as root), or print the apt-get line
# pkg-config is asked when make reads this file, so the targets that install first (test,
# test-fast, demo, train-check) build in a second make that reads it after `deps`. Objects
# depend on a stamp of the compiler line, so a change in what was found rebuilds them.

SHELL := /bin/bash
CC ?= cc
V ?= rel

# --- dependencies -----------------------------------------------------------
DEB_PKGS := build-essential pkg-config libyaml-dev libjansson-dev libopenblas-dev \
            libhdf5-dev libcurl4-openssl-dev gnuplot-nox mandoc libopenmpi-dev openmpi-bin \
            libxml2-dev texlive-latex-base texlive-latex-recommended jq
PKG_REQUIRED := yaml-0.1 jansson openblas libxml-2.0
PKG_OPTIONAL := hdf5 libcurl ompi-c
PKG_FOUND := $(strip $(foreach p,$(PKG_REQUIRED) $(PKG_OPTIONAL),$(if $(shell pkg-config --exists $(p) 2>/dev/null && echo y),$(p))))
PKG_MISSING := $(filter-out $(PKG_FOUND),$(PKG_REQUIRED) $(PKG_OPTIONAL))
NVCC := $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
CUDA_HOME := $(if $(NVCC),$(patsubst %/bin/nvcc,%,$(NVCC)))

FEATURE_DEFS := $(if $(filter hdf5,$(PKG_FOUND)),-DCB_HAVE_HDF5) \
                $(if $(filter libcurl,$(PKG_FOUND)),-DCB_HAVE_CURL) \
                $(if $(filter ompi-c,$(PKG_FOUND)),-DCB_HAVE_MPI) \
                $(if $(NVCC),-DCB_HAVE_CUDA -I$(CUDA_HOME)/include)

# --- CUDA: with nvcc, kernels/NAME.cu and lib/backend/cuda/ join the library ------
# The kernels are compiled once for every variant (build/cuda/, not instrumented by the
# sanitizers), for sm_90 (H100, H200) with PTX beside it; -fmad=false keeps a*b+c two
# roundings, as the CPU's C11 build does, so element-wise kernels give the CPU's bits.
CUDA_ARCH ?= sm_90
NVCCFLAGS := -std=c++17 -O2 -arch=$(CUDA_ARCH) -fmad=false -Ilib -Xcompiler -Wall,-fPIC
CU_SRC := $(if $(NVCC),$(sort $(wildcard kernels/*.cu)))
CU_OBJ := $(CU_SRC:kernels/%.cu=build/cuda/%.o)
comma := ,
# NCCL: the collectives of data-parallel ranks on GPUs (lib/dist), with MPI
CUDA_LIBS := $(if $(NVCC),-L$(CUDA_HOME)/lib64 -Wl$(comma)-rpath$(comma)$(CUDA_HOME)/lib64 -lcublas -lcublasLt -lcudart \
             $(if $(filter ompi-c,$(PKG_FOUND)),-lnccl) -lstdc++)
PKG_CFLAGS := $(if $(PKG_FOUND),$(shell pkg-config --cflags $(PKG_FOUND)))
PKG_LIBS := $(if $(PKG_FOUND),$(shell pkg-config --libs $(PKG_FOUND)))

# --- flags per variant --------------------------------------------------------
WARN := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wvla
BASE_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -fopenmp -g $(WARN) \
               -Ilib -Itests $(PKG_CFLAGS) $(FEATURE_DEFS)
ifeq ($(V),asan)
  OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  BINDIR := build/asan/bin
  # -fsanitize turns off the linker's --as-needed, so every program loaded every library
  # (cuBLAS's alone is half a second of CPU at each start, thousands of starts in make
  # test); each program links only what it uses, as the rel build does
  VARIANT_LDFLAGS := -Wl,--as-needed
else
  OPT := -O2 -march=native
  BINDIR := bin
endif
CFLAGS_ALL := $(BASE_CFLAGS) $(OPT) $(CFLAGS)
LDLIBS_ALL := $(PKG_LIBS) $(CUDA_LIBS) -lm -lpthread -fopenmp $(LDLIBS)
LDFLAGS_ALL := $(OPT) $(LDFLAGS)$(if $(VARIANT_LDFLAGS), $(VARIANT_LDFLAGS))

B := build/$(V)
# The stamp holds the compiler, flags and libraries; it is rewritten only when they change,
# and every object depends on it (one struct laid out two ways crashes; see issue 12).
FLAGS_STAMP := $(B)/flags.stamp
FLAGS_LINE := $(CC) $(CFLAGS_ALL) | $(LDFLAGS_ALL) $(LDLIBS_ALL)
ifneq ($(MAKECMDGOALS),clean)
ifneq ($(file <$(FLAGS_STAMP)),$(FLAGS_LINE))
$(shell mkdir -p $(B))
$(file >$(FLAGS_STAMP),$(FLAGS_LINE))
endif
endif
LIB_SRC := $(shell find lib -name '*.c' $(if $(NVCC),,-not -path 'lib/backend/cuda/*') | sort)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o) $(CU_OBJ)
LIB_A := $(B)/libcaramba.a
CMD_SRC := $(sort $(wildcard cmd/*.c))
TOOLS := $(CMD_SRC:cmd/%.c=$(BINDIR)/%)
TEST_SRC := $(shell find tests/unit -name 'test_*.c' | sort)
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(B)/tests/%)
TEST_MAIN := $(B)/obj/tests/test_main.o
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

.SECONDARY:
.PHONY: all deps test test-fast demo train-check clean tests-built bench-built lint-man config kernels
all: config $(TOOLS) kernels

PKG_REQUIRED_MISSING := $(filter $(PKG_REQUIRED),$(PKG_MISSING))
config:
	@if [ -z "$$CB_QUIET_CONFIG" ]; then \
	  echo "caramba: found: $(PKG_FOUND)$(if $(NVCC), nvcc)"; \
	  echo "caramba: left out: $(if $(PKG_MISSING),$(PKG_MISSING),nothing)$(if $(NVCC),, cuda (no nvcc))"; \
	fi
	@if [ -n "$(PKG_REQUIRED_MISSING)" ]; then \
	  echo "caramba: pkg-config finds no $(PKG_REQUIRED_MISSING), which caramba needs; run 'make deps' (as root) first" >&2; \
	  exit 2; \
	fi

# Which BLAS kernels the tools run (lib/backend/cpu/blas.c chooses them), once they are built.
kernels: $(TOOLS)
	@if [ -z "$$CB_QUIET_CONFIG" ]; then \
	  $(BINDIR)/cb --version | sed -n 's/^blas: /caramba: blas: /p'; \
	fi

$(B)/obj/%.o: %.c $(FLAGS_STAMP) | config
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

build/cuda/%.o: kernels/%.cu $(wildcard kernels/*.cuh) lib/backend/cuda/kernels.h | config
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIB_A): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

$(BINDIR)/%: $(B)/obj/cmd/%.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(LIB_A) $(LDLIBS_ALL)

$(B)/tests/%: $(B)/obj/tests/unit/%.o $(TEST_MAIN) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(TEST_MAIN) $(LIB_A) $(LDLIBS_ALL)

$(B)/bench/%: $(B)/obj/bench/%.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(LIB_A) $(LDLIBS_ALL)

tests-built: all $(TEST_BIN)
bench-built: all $(BENCH_BIN)

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q ' installed$$' || missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "caramba: installing$$missing"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing) >/dev/null \
	    || { echo "caramba: apt-get install failed for:$$missing" >&2; exit 2; }; \
	else \
	  echo "caramba: missing packages; run: sudo apt-get install$$missing" >&2; exit 2; \
	fi

# make -s print-DEB_PKGS: a variable's value, for scripts (.ci/run)
print-%:
	@echo $($*)

lint-man:
	@mandoc -Tlint -Wwarning man/*.[0-9]

test: deps
	@$(MAKE) --no-print-directory tests-built
	@CB_QUIET_CONFIG=1 $(MAKE) --no-print-directory V=asan tests-built
	@tests/run.sh rel:bin:build/rel/tests asan:build/asan/bin:build/asan/tests

test-fast: deps
	@$(MAKE) --no-print-directory tests-built
	@tests/run.sh rel:bin:build/rel/tests

demo: deps
	@$(MAKE) --no-print-directory all
	@pipelines/demo.sh

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)

# The training bar of presets/tiny_sotu.yml: within ten minutes on two cores, a validation
# loss at least 1.0 nat per token below the unigram baseline. Not part of `make test`.
train-check: deps
	@$(MAKE) --no-print-directory all
	@pipelines/train-check.sh
