/*
 * Stream a completion from a GGUF model with tramontane's C API.
 *
 *   cc -O2 generate.c $(pkg-config --cflags --libs tramontane) -o generate
 *   ./generate model.gguf "The capital of France is" -n 32 -t 0
 *
 * Usage: generate MODEL PROMPT [-n MAX_TOKENS] [-t TEMPERATURE] [-j THREADS]
 *                 [-s SEED] [-c CONTEXT] [--echo] [--ids]
 * The completion (without the prompt, unless --echo) streams to stdout, followed by a
 * newline. With --ids, stdout gets the generated token ids instead, one per line
 * (cross/test-c-static-aarch64.sh compares them between x86-64 and aarch64). Errors
 * go to stderr as one line from tra_last_error(), and the exit status is 1 (2 for
 * bad usage).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tramontane.h"

static int usage(void) {
    fprintf(stderr,
            "usage: generate MODEL PROMPT [-n MAX_TOKENS] [-t TEMPERATURE] [-j THREADS] "
            "[-s SEED] [-c CONTEXT] [--echo] [--ids]\n");
    return 2;
}

/* The failed call's message, e.g. "tra_model_open: cannot read x.gguf: No such file ...". */
static int fail(tra_status st) {
    fprintf(stderr, "generate: %s (status %d)\n", tra_last_error(), (int)st);
    return 1;
}

static int parse_ulong(const char *s, unsigned long long max, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > max || s[0] == '-') return 0;
    *out = v;
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL;
    int echo = 0, ids = 0;
    tra_session_params params = tra_session_params_default();
    params.max_tokens = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        unsigned long long v;
        if (strcmp(a, "--echo") == 0) {
            echo = 1;
        } else if (strcmp(a, "--ids") == 0) {
            ids = 1;
        } else if (a[0] == '-' && a[1] && !a[2] && strchr("ntjsc", a[1]) && i + 1 < argc) {
            const char *val = argv[++i];
            switch (a[1]) {
            case 'n':
                if (!parse_ulong(val, UINT32_MAX, &v)) return usage();
                params.max_tokens = (uint32_t)v;
                break;
            case 't': {
                char *end;
                params.temperature = strtof(val, &end);
                if (end == val || *end) return usage();
                break;
            }
            case 'j':
                if (!parse_ulong(val, TRA_MAX_THREADS, &v)) return usage();
                params.threads = (uint32_t)v;
                break;
            case 's':
                if (!parse_ulong(val, ULLONG_MAX, &v)) return usage();
                params.seed = (uint64_t)v;
                break;
            case 'c':
                if (!parse_ulong(val, UINT32_MAX, &v)) return usage();
                params.context_len = (uint32_t)v;
                break;
            }
        } else if (!model_path) {
            model_path = a;
        } else if (!prompt) {
            prompt = a;
        } else {
            return usage();
        }
    }
    if (!model_path || !prompt) return usage();

    tra_model *model = NULL;
    tra_session *session = NULL;
    tra_status st = tra_model_open(model_path, &model);
    if (st != TRA_OK) return fail(st);
    st = tra_session_new(model, &params, &session);
    /* The session keeps the model alive: the model handle can go now. */
    tra_model_free(model);
    if (st != TRA_OK) return fail(st);

    if (echo && !ids) fputs(prompt, stdout);
    st = tra_session_prompt(session, prompt);

    size_t cap = 64, len = 0;
    char *buf = malloc(cap);
    int32_t token;
    while (st == TRA_OK && buf) {
        st = tra_session_next(session, buf, cap, &len, &token);
        if (st == TRA_OK) {
            if (ids)
                printf("%d\n", (int)token);
            else
                fwrite(buf, 1, len, stdout);
            fflush(stdout);
        } else if (st == TRA_ERR_BUFFER_TOO_SMALL) {
            /* Nothing was consumed: grow the buffer to the size needed and ask again. */
            char *bigger = realloc(buf, len);
            if (!bigger) break;
            buf = bigger;
            cap = len;
            st = TRA_OK;
        }
    }
    int rc = 0;
    if (!buf) {
        fprintf(stderr, "generate: out of memory\n");
        rc = 1;
    } else if (st != TRA_END) {
        if (!ids) fputc('\n', stdout);
        rc = fail(st);
    } else if (!ids) {
        fputc('\n', stdout);
    }
    free(buf);
    tra_session_free(session);
    return rc;
}
