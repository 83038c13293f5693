// tests/fuzz/replay.c: run a fuzz harness's inputs once each, without libFuzzer.
//
// Linked with tests/fuzz_checkpoint.c or tests/fuzz_tokenizer.c and any C11
// compiler (with or without SANITIZE=1), it feeds every file in the given
// files or directories to LLVMFuzzerTestOneInput: the committed seeds and
// regression inputs then run in `make test`. A broken invariant aborts (the
// harness's REQUIRE); otherwise it prints "N passed, 0 failed".
//
//   cc -O1 -g -I. -o tests/build/replay_checkpoint tests/fuzz/replay.c tests/fuzz_checkpoint.c tokenizer.c -lm -lpthread
//   tests/build/replay_checkpoint tests/fuzz/checkpoint tests/fuzz/regressions/checkpoint
//
// Without arguments it replays REPLAY_DIRS, a ':'-separated list fixed at
// compile time (-DREPLAY_DIRS='"tests/fuzz/checkpoint:tests/fuzz/regressions/checkpoint"').
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int ran, unreadable;

static void one_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { printf("  FAIL cannot open %s\n", path); unreadable++; return; }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf) { printf("  FAIL out of memory reading %s\n", path); unreadable++; return; }
    // an exact-size copy, so that the sanitizers see reads past the end
    unsigned char *exact = malloc(n ? n : 1);
    memcpy(exact, buf, n);
    free(buf);
    if (getenv("VERBOSE")) printf("  input %s (%zu bytes)\n", path, n);
    fflush(stdout);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    ran++;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void one_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return;  // an absent directory (no regressions yet) is fine
    if (!S_ISDIR(st.st_mode)) { one_file(path); return; }
    DIR *d = opendir(path);
    if (!d) return;
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strstr(e->d_name, ".md") || strstr(e->d_name, ".txt")) continue;
        names = realloc(names, (n + 1) * sizeof *names);
        names[n] = malloc(strlen(path) + strlen(e->d_name) + 2);
        sprintf(names[n], "%s/%s", path, e->d_name);
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) one_file(names[i]);
        free(names[i]);
    }
    free(names);
}

#ifndef REPLAY_DIRS
#define REPLAY_DIRS ""
#endif

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) one_path(argv[i]);
    if (argc == 1) {
        char dirs[] = REPLAY_DIRS;
        for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save))
            one_path(d);
    }
    printf("fuzz replay: %d inputs ran without breaking an invariant\n", ran);
    printf("%d passed, %d failed\n", ran, unreadable + (ran == 0));
    return unreadable || ran == 0;
}
