# repfs -- see README.md. `make` builds, `make test` runs every test,
# `make demo` shows a leader at work, `make bench` measures it against the
# native file system. SANITIZE=address,undefined builds into build-san/.

CC ?= cc
SANITIZE ?=
BUILD := build$(if $(SANITIZE),-san)

WARN := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-declarations \
	-Wwrite-strings -Wvla -Wno-unused-parameter
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 $(WARN) -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -pthread \
	$(shell pkg-config --cflags fuse3 2>/dev/null || echo -I/usr/include/fuse3)
LDLIBS := -lfuse3 -lsodium -lxxhash -pthread
ifneq ($(SANITIZE),)
CFLAGS += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SANITIZE)
endif

LIB_SRC := $(wildcard lib/*.c replication/*.c fs/*.c net/*.c)
TOOL_SRC := $(wildcard tools/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/%.o)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/%.o)
HELPER_SRC := $(wildcard tests/helpers/*.c)
HELPERS := $(HELPER_SRC:tests/helpers/%.c=$(BUILD)/helpers/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all deps test unit integration demo bench clean fuzz format
all: deps $(BUILD)/repfs $(HELPERS) $(BENCH_BIN)

deps:
	@./scripts/ensure-deps

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/librepfs.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/repfs: $(TOOL_OBJ) $(BUILD)/librepfs.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/helpers/%: tests/helpers/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

$(BUILD)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

$(BUILD)/unit-tests: $(UNIT_OBJ) $(BUILD)/librepfs.a
	$(CC) $(LDFLAGS) -o $@ $^ -lcriterion $(LDLIBS)

unit: deps $(BUILD)/unit-tests
	$(BUILD)/unit-tests --jobs 2

integration: all
	REPFS=$(abspath $(BUILD)/repfs) HELPERS=$(abspath $(BUILD)/helpers) ./tests/run-integration

# Everything: unit and integration tests, then both again under ASan+UBSan.
test: deps
	./tests/run-all

demo: all
	./scripts/demo $(abspath $(BUILD)/repfs)

bench: all
	REPFS=$(abspath $(BUILD)/repfs) BENCHBIN=$(abspath $(BUILD)/bench) ./bench/run

format:
	clang-format -i $(LIB_SRC) $(TOOL_SRC) $(UNIT_SRC) $(HELPER_SRC) */*.h

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(UNIT_OBJ:.o=.d)

# libFuzzer targets (clang): `make fuzz` builds them and runs each for FUZZ_SECONDS;
# the corpus is kept in build/fuzz/corpus-*, anything found in build/fuzz/crashes/.
FUZZ_SECONDS ?= 10
FUZZ_CC ?= clang
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-std=gnu11 $(WARN) -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64

build/fuzz/fuzz_frame: tests/fuzz/fuzz_frame.c net/frame.c net/frame.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_frame.c net/frame.c

build/fuzz/fuzz_record: tests/fuzz/fuzz_record.c replication/record.c replication/record.h lib/crypto.c lib/crypto.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_record.c replication/record.c lib/crypto.c -lsodium

fuzz: build/fuzz/fuzz_frame build/fuzz/fuzz_record
	@mkdir -p build/fuzz/crashes
	@for t in frame record; do \
		mkdir -p build/fuzz/corpus-$$t; \
		echo "=== fuzz_$$t: $(FUZZ_SECONDS) s"; \
		if build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build/fuzz/crashes/$$t- \
			build/fuzz/corpus-$$t >build/fuzz/$$t.log 2>&1; then \
			tail -n 1 build/fuzz/$$t.log; \
		else \
			grep -E -m1 -A14 'ERROR|runtime error|deadly signal' build/fuzz/$$t.log; \
			grep -E 'SUMMARY|Test unit written' build/fuzz/$$t.log; \
			echo "fuzz_$$t failed: see build/fuzz/$$t.log"; exit 1; \
		fi; \
	done
