/*
 * Robustness tests of tramontane's C ABI, in C: NULL for every pointer argument, bad
 * files and bytes, bad parameters, TRA_END after TRA_END, cancellation from a second
 * thread, TRA_ERR_BUFFER_TOO_SMALL without losing the piece, callbacks, saved states,
 * logits, one model shared by sessions on four threads. Built and run (natively and
 * under valgrind) by tests/ffi.rs.
 *
 * Usage: robust MODEL.gguf SCRATCH_DIR      (a small synthetic model)
 * Prints one line per failed check and "robust: N checks, M failed"; exit 1 on failure.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tramontane.h"

static int n_checks, n_failed;

#define CHECK(cond, ...)                                                            \
    do {                                                                            \
        n_checks++;                                                                 \
        if (!(cond)) {                                                              \
            n_failed++;                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                           \
            fprintf(stderr, " [last error: %s]\n", tra_last_error());               \
        }                                                                           \
    } while (0)

/* `st` must be `want`; an error status must come with a message naming `func`. */
static void expect_status(int line, const char *what, tra_status st, tra_status want,
                          const char *func) {
    n_checks++;
    if (st != want) {
        n_failed++;
        fprintf(stderr, "FAIL line %d: %s: status %d, want %d [last error: %s]\n", line, what,
                (int)st, (int)want, tra_last_error());
        return;
    }
    if (want < 0) {
        const char *msg = tra_last_error();
        n_checks++;
        if (!msg || strncmp(msg, func, strlen(func)) != 0 || strlen(msg) <= strlen(func) + 2) {
            n_failed++;
            fprintf(stderr, "FAIL line %d: %s: message \"%s\" does not name %s\n", line, what,
                    msg ? msg : "(NULL)", func);
        }
    }
}
#define EXPECT(call, want, func) expect_status(__LINE__, #call, (call), (want), func)
/* NULL argument: TRA_ERR_INVALID_ARGUMENT and a message "func: ... is NULL". */
#define EXPECT_NULL(call, func)                                                     \
    do {                                                                            \
        expect_status(__LINE__, #call, (call), TRA_ERR_INVALID_ARGUMENT, func);     \
        CHECK(strstr(tra_last_error(), "is NULL") != NULL, "%s", #call);            \
    } while (0)

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static tra_session_params greedy(uint32_t max_tokens) {
    tra_session_params p = tra_session_params_default();
    p.temperature = 0.0f;
    p.context_len = 256;
    p.max_tokens = max_tokens;
    return p;
}

static tra_session *new_session(const tra_model *m, tra_session_params p) {
    tra_session *s = NULL;
    tra_status st = tra_session_new(m, &p, &s);
    CHECK(st == TRA_OK && s, "tra_session_new: %d", (int)st);
    return s;
}

/* Generate to the end with a big buffer; the text goes to `out` (cap bytes). */
static tra_status collect(tra_session *s, char *out, size_t cap, int *n_pieces) {
    char buf[512];
    size_t len, used = 0;
    int32_t tok;
    tra_status st;
    *n_pieces = 0;
    out[0] = 0;
    while ((st = tra_session_next(s, buf, sizeof buf, &len, &tok)) == TRA_OK) {
        (*n_pieces)++;
        if (used + len < cap) {
            memcpy(out + used, buf, len + 1);
            used += len;
        }
    }
    return st;
}

static void test_null_arguments(const tra_model *m, tra_session *s) {
    tra_model *mo = (tra_model *)1;
    tra_session *so = (tra_session *)1;
    tra_model_info info;
    int32_t ids[8] = {1, 2, 3};
    size_t n = 0;
    char buf[64];
    const float *logits;
    bool flag;
    unsigned char bytes[4] = {0};

    EXPECT_NULL(tra_model_open(NULL, &mo), "tra_model_open");
    CHECK(mo == NULL, "tra_model_open must set *out to NULL on failure");
    EXPECT_NULL(tra_model_open("x.gguf", NULL), "tra_model_open");
    mo = (tra_model *)1;
    EXPECT_NULL(tra_model_open_bytes(NULL, 16, &mo), "tra_model_open_bytes");
    CHECK(mo == NULL, "tra_model_open_bytes must set *out to NULL on failure");
    EXPECT_NULL(tra_model_open_bytes(bytes, sizeof bytes, NULL), "tra_model_open_bytes");
    tra_model_free(NULL);
    tra_session_free(NULL);

    EXPECT_NULL(tra_model_get_info(NULL, &info), "tra_model_get_info");
    EXPECT_NULL(tra_model_get_info(m, NULL), "tra_model_get_info");
    EXPECT_NULL(tra_tokenize(NULL, "a", ids, 8, &n), "tra_tokenize");
    EXPECT_NULL(tra_tokenize(m, NULL, ids, 8, &n), "tra_tokenize");
    EXPECT_NULL(tra_tokenize(m, "a", NULL, 8, &n), "tra_tokenize");
    EXPECT_NULL(tra_tokenize(m, "a", ids, 8, NULL), "tra_tokenize");
    EXPECT_NULL(tra_tokenize_ex(NULL, "a", 0, ids, 8, &n), "tra_tokenize_ex");
    EXPECT_NULL(tra_tokenize_ex(m, NULL, 0, ids, 8, &n), "tra_tokenize_ex");
    EXPECT_NULL(tra_tokenize_ex(m, "a", 0, NULL, 8, &n), "tra_tokenize_ex");
    EXPECT_NULL(tra_tokenize_ex(m, "a", 0, ids, 8, NULL), "tra_tokenize_ex");
    EXPECT_NULL(tra_detokenize(NULL, ids, 1, buf, sizeof buf, &n), "tra_detokenize");
    EXPECT_NULL(tra_detokenize(m, NULL, 1, buf, sizeof buf, &n), "tra_detokenize");
    EXPECT_NULL(tra_detokenize(m, ids, 1, NULL, sizeof buf, &n), "tra_detokenize");
    EXPECT_NULL(tra_detokenize(m, ids, 1, buf, sizeof buf, NULL), "tra_detokenize");
    EXPECT_NULL(tra_token_to_piece(NULL, 3, buf, sizeof buf, &n), "tra_token_to_piece");
    EXPECT_NULL(tra_token_to_piece(m, 3, NULL, sizeof buf, &n), "tra_token_to_piece");
    EXPECT_NULL(tra_token_to_piece(m, 3, buf, sizeof buf, NULL), "tra_token_to_piece");
    EXPECT_NULL(tra_token_is_eog(NULL, 2, &flag), "tra_token_is_eog");
    EXPECT_NULL(tra_token_is_eog(m, 2, NULL), "tra_token_is_eog");

    EXPECT_NULL(tra_session_new(NULL, NULL, &so), "tra_session_new");
    CHECK(so == NULL, "tra_session_new must set *out to NULL on failure");
    EXPECT_NULL(tra_session_new(m, NULL, NULL), "tra_session_new");
    EXPECT_NULL(tra_session_prompt(NULL, "a"), "tra_session_prompt");
    EXPECT_NULL(tra_session_prompt(s, NULL), "tra_session_prompt");
    EXPECT_NULL(tra_session_prompt_tokens(NULL, ids, 1), "tra_session_prompt_tokens");
    EXPECT_NULL(tra_session_prompt_tokens(s, NULL, 1), "tra_session_prompt_tokens");
    int32_t tok;
    EXPECT_NULL(tra_session_next(NULL, buf, sizeof buf, &n, &tok), "tra_session_next");
    EXPECT_NULL(tra_session_next(s, NULL, sizeof buf, &n, &tok), "tra_session_next");
    EXPECT_NULL(tra_session_next(s, buf, sizeof buf, NULL, &tok), "tra_session_next");
    EXPECT_NULL(tra_session_next(s, buf, sizeof buf, &n, NULL), "tra_session_next");
    EXPECT_NULL(tra_session_generate(NULL, "a", NULL, NULL), "tra_session_generate");
    EXPECT_NULL(tra_session_generate(s, NULL, NULL, NULL), "tra_session_generate");
    EXPECT_NULL(tra_session_generate(s, "a", NULL, NULL), "tra_session_generate");
    EXPECT_NULL(tra_session_cancel(NULL), "tra_session_cancel");
    EXPECT_NULL(tra_session_reset(NULL), "tra_session_reset");
    EXPECT_NULL(tra_session_feed(NULL, ids, 1), "tra_session_feed");
    EXPECT_NULL(tra_session_feed(s, NULL, 1), "tra_session_feed");
    EXPECT_NULL(tra_session_logits(NULL, &logits, &n), "tra_session_logits");
    EXPECT_NULL(tra_session_logits(s, NULL, &n), "tra_session_logits");
    EXPECT_NULL(tra_session_logits(s, &logits, NULL), "tra_session_logits");
    EXPECT_NULL(tra_session_position(NULL, &n), "tra_session_position");
    EXPECT_NULL(tra_session_position(s, NULL), "tra_session_position");
    EXPECT_NULL(tra_session_save_state(NULL, bytes, sizeof bytes, &n), "tra_session_save_state");
    EXPECT_NULL(tra_session_save_state(s, NULL, 0, &n), "tra_session_save_state");
    EXPECT_NULL(tra_session_save_state(s, bytes, sizeof bytes, NULL), "tra_session_save_state");
    EXPECT_NULL(tra_session_load_state(NULL, bytes, sizeof bytes), "tra_session_load_state");
    EXPECT_NULL(tra_session_load_state(s, NULL, 0), "tra_session_load_state");

    CHECK(tra_version() && strlen(tra_version()) > 0, "tra_version");
    CHECK(tra_last_error() != NULL, "tra_last_error never NULL");
}

static void test_files(const char *model_path, const char *dir) {
    char path[4096];
    tra_model *m = (tra_model *)1;

    snprintf(path, sizeof path, "%s/does-not-exist.gguf", dir);
    EXPECT(tra_model_open(path, &m), TRA_ERR_IO, "tra_model_open");
    CHECK(m == NULL, "missing file: *out NULL");
    CHECK(strstr(tra_last_error(), "does-not-exist.gguf") != NULL, "message names the file");

    static const char junk[] = "this is not a GGUF file, just some text\n";
    snprintf(path, sizeof path, "%s/junk.gguf", dir);
    CHECK(write_file(path, junk, sizeof junk - 1), "write %s", path);
    EXPECT(tra_model_open(path, &m), TRA_ERR_FORMAT, "tra_model_open");
    CHECK(m == NULL, "not GGUF: *out NULL");

    snprintf(path, sizeof path, "%s/empty.gguf", dir);
    CHECK(write_file(path, "", 0), "write %s", path);
    EXPECT(tra_model_open(path, &m), TRA_ERR_FORMAT, "tra_model_open");

    size_t len = 0;
    unsigned char *bytes = read_file(model_path, &len);
    CHECK(bytes && len > 1000, "read %s", model_path);
    if (!bytes) return;
    snprintf(path, sizeof path, "%s/truncated.gguf", dir);
    CHECK(write_file(path, bytes, len / 2), "write %s", path);
    EXPECT(tra_model_open(path, &m), TRA_ERR_FORMAT, "tra_model_open");
    CHECK(m == NULL, "truncated: *out NULL");

    /* The same from memory, at many lengths: every prefix is refused cleanly. */
    size_t cuts[] = {0, 1, 3, 4, 8, 23, 24, 100, 1000, len / 3, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        tra_status st = tra_model_open_bytes(bytes, cuts[i], &m);
        CHECK(st == TRA_ERR_FORMAT && m == NULL, "open_bytes prefix of %zu bytes: %d",
              cuts[i], (int)st);
    }
    /* A flipped magic byte. */
    bytes[0] ^= 0xff;
    EXPECT(tra_model_open_bytes(bytes, len, &m), TRA_ERR_FORMAT, "tra_model_open_bytes");
    bytes[0] ^= 0xff;

    /* The whole file from memory works, and generates as the file does. */
    tra_model *from_bytes = NULL, *from_file = NULL;
    EXPECT(tra_model_open_bytes(bytes, len, &from_bytes), TRA_OK, "");
    EXPECT(tra_model_open(model_path, &from_file), TRA_OK, "");
    if (from_bytes && from_file) {
        char a[2048], b[2048];
        int na, nb;
        tra_session *sa = new_session(from_bytes, greedy(12));
        tra_session *sb = new_session(from_file, greedy(12));
        EXPECT(tra_session_prompt(sa, "hello"), TRA_OK, "");
        EXPECT(tra_session_prompt(sb, "hello"), TRA_OK, "");
        CHECK(collect(sa, a, sizeof a, &na) == TRA_END && collect(sb, b, sizeof b, &nb) == TRA_END,
              "generation ends");
        CHECK(na == nb && strcmp(a, b) == 0, "bytes and file differ: \"%s\" vs \"%s\"", a, b);
        tra_session_free(sa);
        tra_session_free(sb);
    }
    tra_model_free(from_bytes);
    tra_model_free(from_file);
    free(bytes);
}

static void test_params(const tra_model *m) {
    tra_session *s = (tra_session *)1;
    tra_session_params p;

    p = tra_session_params_default();
    CHECK(p.context_len == 2048 && p.threads == 1 && p.max_tokens == 256 && p.top_k == 40,
          "defaults");
    p.context_len = 0;
    EXPECT(tra_session_new(m, &p, &s), TRA_ERR_INVALID_ARGUMENT, "tra_session_new");
    CHECK(s == NULL, "bad params: *out NULL");
    p = tra_session_params_default();
    p.temperature = -1.0f;
    EXPECT(tra_session_new(m, &p, &s), TRA_ERR_INVALID_ARGUMENT, "tra_session_new");
    p = tra_session_params_default();
    p.temperature = 0.0f / 0.0f;
    EXPECT(tra_session_new(m, &p, &s), TRA_ERR_INVALID_ARGUMENT, "tra_session_new");
    p = tra_session_params_default();
    p.top_p = 1.5f;
    EXPECT(tra_session_new(m, &p, &s), TRA_ERR_INVALID_ARGUMENT, "tra_session_new");
    p = tra_session_params_default();
    p.min_p = -0.1f;
    EXPECT(tra_session_new(m, &p, &s), TRA_ERR_INVALID_ARGUMENT, "tra_session_new");
    p = tra_session_params_default();
    p.repeat_penalty = 0.0f;
    EXPECT(tra_session_new(m, &p, &s), TRA_ERR_INVALID_ARGUMENT, "tra_session_new");
    p = tra_session_params_default();
    p.threads = TRA_MAX_THREADS + 1;
    EXPECT(tra_session_new(m, &p, &s), TRA_ERR_INVALID_ARGUMENT, "tra_session_new");

    /* NULL params are the defaults. */
    EXPECT(tra_session_new(m, NULL, &s), TRA_OK, "");
    tra_session_free(s);
    /* Negative top_k is "all"; 0 max_tokens is "no limit". */
    p = tra_session_params_default();
    p.top_k = -5;
    p.max_tokens = 0;
    p.threads = 2;
    EXPECT(tra_session_new(m, &p, &s), TRA_OK, "");
    tra_session_free(s);
}

static void test_end_after_end(const tra_model *m) {
    char buf[256];
    size_t len;
    int32_t tok;
    tra_session *s = new_session(m, greedy(5));
    /* No generation yet: TRA_END. */
    EXPECT(tra_session_next(s, buf, sizeof buf, &len, &tok), TRA_END, "");
    EXPECT(tra_session_prompt(s, "hello"), TRA_OK, "");
    int pieces = 0;
    tra_status st;
    while ((st = tra_session_next(s, buf, sizeof buf, &len, &tok)) == TRA_OK) {
        pieces++;
        CHECK(strlen(buf) == len, "piece length %zu vs strlen %zu", len, strlen(buf));
        CHECK(tok >= 0, "token id %d", tok);
    }
    CHECK(st == TRA_END, "generation ends with TRA_END, got %d", (int)st);
    CHECK(pieces >= 1 && pieces <= 5, "%d pieces for max_tokens 5", pieces);
    for (int i = 0; i < 5; i++)
        EXPECT(tra_session_next(s, buf, sizeof buf, &len, &tok), TRA_END, "");
    /* Another prompt continues the sequence. */
    size_t pos0, pos1;
    EXPECT(tra_session_position(s, &pos0), TRA_OK, "");
    EXPECT(tra_session_prompt(s, " again"), TRA_OK, "");
    EXPECT(tra_session_position(s, &pos1), TRA_OK, "");
    CHECK(pos1 > pos0, "position %zu then %zu", pos0, pos1);
    EXPECT(tra_session_next(s, buf, sizeof buf, &len, &tok), TRA_OK, "");
    EXPECT(tra_session_reset(s), TRA_OK, "");
    EXPECT(tra_session_position(s, &pos0), TRA_OK, "");
    CHECK(pos0 == 0, "position after reset %zu", pos0);
    EXPECT(tra_session_next(s, buf, sizeof buf, &len, &tok), TRA_END, "");
    /* Nothing to generate from ("" on an empty session would still add BOS). */
    int32_t none[1] = {0};
    EXPECT(tra_session_prompt_tokens(s, none, 0), TRA_ERR_INVALID_ARGUMENT, "tra_session_prompt_tokens");
    /* Not UTF-8. */
    EXPECT(tra_session_prompt(s, "\xff\xfe"), TRA_ERR_INVALID_ARGUMENT, "tra_session_prompt");
    /* A prompt that does not fit the context. */
    char *long_prompt = malloc(4000);
    memset(long_prompt, 'a', 3999);
    long_prompt[3999] = 0;
    EXPECT(tra_session_prompt(s, long_prompt), TRA_ERR_CONTEXT_FULL, "tra_session_prompt");
    free(long_prompt);
    tra_session_free(s);

    /* Generation that runs into the end of the context: TRA_ERR_CONTEXT_FULL, then END. */
    tra_session_params p = greedy(0);
    p.context_len = 16;
    s = new_session(m, p);
    EXPECT(tra_session_prompt(s, "hello"), TRA_OK, "");
    while ((st = tra_session_next(s, buf, sizeof buf, &len, &tok)) == TRA_OK) {
    }
    CHECK(st == TRA_ERR_CONTEXT_FULL || st == TRA_END, "context 16: %d", (int)st);
    EXPECT(tra_session_next(s, buf, sizeof buf, &len, &tok), TRA_END, "");
    tra_session_free(s);
}

static void test_small_buffer(const tra_model *m) {
    char ref[4096], got[4096];
    int n_ref;
    tra_session *a = new_session(m, greedy(24));
    EXPECT(tra_session_prompt(a, "hello"), TRA_OK, "");
    CHECK(collect(a, ref, sizeof ref, &n_ref) == TRA_END, "reference run");
    tra_session_free(a);

    tra_session *s = new_session(m, greedy(24));
    EXPECT(tra_session_prompt(s, "hello"), TRA_OK, "");
    char one[1], *big = malloc(4096);
    size_t used = 0, len = 0;
    int32_t tok = -1, tok2 = -1;
    int too_small = 0, pieces = 0;
    tra_status st;
    got[0] = 0;
    for (;;) {
        st = tra_session_next(s, one, 1, &len, &tok);
        if (st == TRA_OK) { /* an empty piece fits in one byte (the NUL) */
            CHECK(len == 0 && one[0] == 0, "1-byte buffer: len %zu", len);
            pieces++;
            continue;
        }
        if (st != TRA_ERR_BUFFER_TOO_SMALL) break;
        too_small++;
        CHECK(len >= 2, "size needed %zu includes the NUL", len);
        CHECK(strstr(tra_last_error(), "tra_session_next") != NULL, "message");
        size_t need = len;
        /* Asking again with the small buffer consumes nothing either. */
        EXPECT(tra_session_next(s, one, 1, &len, &tok2), TRA_ERR_BUFFER_TOO_SMALL, "tra_session_next");
        CHECK(len == need && tok2 == tok, "same piece: %zu/%zu, %d/%d", len, need, tok2, tok);
        /* Exactly the size needed succeeds. */
        EXPECT(tra_session_next(s, big, need, &len, &tok2), TRA_OK, "");
        CHECK(len == need - 1 && big[len] == 0 && strlen(big) == len && tok2 == tok,
              "piece of %zu bytes, token %d/%d", len, tok2, tok);
        pieces++;
        if (used + len < sizeof got) {
            memcpy(got + used, big, len + 1);
            used += len;
        }
    }
    CHECK(st == TRA_END, "ends with TRA_END: %d", (int)st);
    CHECK(too_small > 0, "no piece was longer than 0 bytes");
    CHECK(pieces == n_ref && strcmp(got, ref) == 0,
          "text with small buffers differs: %d pieces \"%s\" vs %d \"%s\"", pieces, got, n_ref, ref);
    free(big);
    tra_session_free(s);
}

struct canceller {
    tra_session *s;
    volatile int go;
    tra_status st;
};

static void *cancel_thread(void *arg) {
    struct canceller *c = arg;
    while (!__atomic_load_n(&c->go, __ATOMIC_ACQUIRE)) {
    }
    __atomic_store_n(&c->st, tra_session_cancel(c->s), __ATOMIC_RELEASE);
    return NULL;
}

static void *cancel_now(void *arg) {
    struct canceller *c = arg;
    c->st = tra_session_cancel(c->s);
    return NULL;
}

static void test_cancel(const tra_model *m) {
    char buf[256];
    size_t len;
    int32_t tok;
    pthread_t th;

    /* Cancelled from another thread between two tokens. */
    tra_session *s = new_session(m, greedy(0));
    EXPECT(tra_session_prompt(s, "hello"), TRA_OK, "");
    EXPECT(tra_session_next(s, buf, sizeof buf, &len, &tok), TRA_OK, "");
    struct canceller c = {s, 1, TRA_ERR_INTERNAL};
    CHECK(pthread_create(&th, NULL, cancel_now, &c) == 0, "pthread_create");
    pthread_join(th, NULL);
    CHECK(c.st == TRA_OK, "tra_session_cancel: %d", (int)c.st);
    EXPECT(tra_session_next(s, buf, sizeof buf, &len, &tok), TRA_ERR_CANCELLED, "tra_session_next");
    EXPECT(tra_session_next(s, buf, sizeof buf, &len, &tok), TRA_END, "");
    /* The request was consumed: a new prompt runs. */
    EXPECT(tra_session_prompt(s, " more"), TRA_OK, "");
    EXPECT(tra_session_next(s, buf, sizeof buf, &len, &tok), TRA_OK, "");

    /* Cancelled while the main thread is generating. */
    c.go = 0;
    c.st = TRA_ERR_INTERNAL;
    CHECK(pthread_create(&th, NULL, cancel_thread, &c) == 0, "pthread_create");
    tra_status st;
    int pieces = 0;
    while ((st = tra_session_next(s, buf, sizeof buf, &len, &tok)) == TRA_OK) {
        if (++pieces == 3) {
            /* Let the other thread cancel, and wait until its call has returned, so the
               outcome does not depend on how the two threads are scheduled (a loaded
               machine could otherwise reach max_tokens first). */
            __atomic_store_n(&c.go, 1, __ATOMIC_RELEASE);
            while (__atomic_load_n(&c.st, __ATOMIC_ACQUIRE) == TRA_ERR_INTERNAL) {
            }
        }
    }
    pthread_join(th, NULL);
    CHECK(st == TRA_ERR_CANCELLED || (pieces < 3 && st != TRA_OK),
          "concurrent cancel: status %d after %d pieces", (int)st, pieces);
    EXPECT(tra_session_next(s, buf, sizeof buf, &len, &tok), TRA_END, "");
    tra_session_free(s);

    /* A request made before the prompt stops its prefill. */
    s = new_session(m, greedy(8));
    EXPECT(tra_session_cancel(s), TRA_OK, "");
    EXPECT(tra_session_prompt(s, "hello there"), TRA_ERR_CANCELLED, "tra_session_prompt");
    EXPECT(tra_session_prompt(s, "hello there"), TRA_OK, "");
    tra_session_free(s);
}

struct cb_state {
    tra_session *s;
    char text[4096];
    size_t used;
    int calls, stop_after;
    tra_status reentrant;
};

static int on_piece(void *user_data, const char *text, size_t len, int32_t token) {
    struct cb_state *st = user_data;
    (void)token;
    st->calls++;
    if (strlen(text) != len) st->reentrant = TRA_ERR_INTERNAL;
    if (st->used + len < sizeof st->text) {
        memcpy(st->text + st->used, text, len + 1);
        st->used += len;
    }
    if (st->calls == 1) {
        /* The session is busy inside its callback: refused, not undefined behaviour. */
        char buf[64];
        size_t l;
        int32_t t;
        st->reentrant = tra_session_next(st->s, buf, sizeof buf, &l, &t);
    }
    return st->stop_after && st->calls >= st->stop_after;
}

static void test_callback(const tra_model *m) {
    char ref[4096];
    int n_ref;
    tra_session *a = new_session(m, greedy(20));
    EXPECT(tra_session_prompt(a, "hello"), TRA_OK, "");
    CHECK(collect(a, ref, sizeof ref, &n_ref) == TRA_END, "reference run");
    tra_session_free(a);

    struct cb_state st;
    memset(&st, 0, sizeof st);
    st.s = new_session(m, greedy(20));
    EXPECT(tra_session_generate(st.s, "hello", on_piece, &st), TRA_OK, "");
    CHECK(st.calls == n_ref && strcmp(st.text, ref) == 0,
          "callback text differs: %d \"%s\" vs %d \"%s\"", st.calls, st.text, n_ref, ref);
    CHECK(st.reentrant == TRA_ERR_INVALID_ARGUMENT, "re-entrant call: %d", (int)st.reentrant);

    /* Stop after 2 pieces. */
    tra_session_reset(st.s);
    st.calls = 0;
    st.used = 0;
    st.stop_after = 2;
    EXPECT(tra_session_generate(st.s, "hello", on_piece, &st), TRA_OK, "");
    CHECK(st.calls == 2, "callback stop: %d calls", st.calls);
    char buf[64];
    size_t l;
    int32_t t;
    EXPECT(tra_session_next(st.s, buf, sizeof buf, &l, &t), TRA_END, "");
    /* user_data may be NULL. */
    tra_session_free(st.s);
}

static void test_tokens_and_logits(const tra_model *m) {
    tra_model_info info;
    EXPECT(tra_model_get_info(m, &info), TRA_OK, "");
    CHECK(info.n_vocab > 0 && info.n_layer > 0, "info");
    bool eog = false;
    if (info.eos >= 0) {
        EXPECT(tra_token_is_eog(m, info.eos, &eog), TRA_OK, "");
        CHECK(eog, "EOS is end of generation");
    }
    EXPECT(tra_token_is_eog(m, -3, &eog), TRA_OK, "");
    CHECK(!eog, "-3 is not EOG");

    int32_t ids[256];
    size_t n = 0, need = 0;
    EXPECT(tra_tokenize(m, "hello world", ids, 0, &need), TRA_ERR_BUFFER_TOO_SMALL, "tra_tokenize");
    CHECK(need > 1, "token count %zu", need);
    EXPECT(tra_tokenize(m, "hello world", ids, need, &n), TRA_OK, "");
    CHECK(n == need && (info.bos < 0 || ids[0] == info.bos), "tokens %zu, first %d", n, ids[0]);
    EXPECT(tra_tokenize_ex(m, "hello world", 0, ids, 256, &n), TRA_OK, "");
    CHECK(n == need - (info.bos >= 0), "without BOS: %zu", n);
    EXPECT(tra_tokenize_ex(m, "a", 4, ids, 256, &n), TRA_ERR_INVALID_ARGUMENT, "tra_tokenize_ex");
    EXPECT(tra_tokenize(m, "\xc3\x28", ids, 256, &n), TRA_ERR_INVALID_ARGUMENT, "tra_tokenize");

    EXPECT(tra_tokenize(m, "hello world", ids, 256, &n), TRA_OK, "");
    char text[512], one[1];
    size_t len = 0;
    EXPECT(tra_detokenize(m, ids, n, one, 1, &len), TRA_ERR_BUFFER_TOO_SMALL, "tra_detokenize");
    size_t tneed = len;
    EXPECT(tra_detokenize(m, ids, n, text, sizeof text, &len), TRA_OK, "");
    CHECK(len + 1 == tneed && strlen(text) == len, "detokenize length %zu/%zu", len, tneed);
    int32_t bad[2] = {1, -1};
    EXPECT(tra_detokenize(m, bad, 2, text, sizeof text, &len), TRA_ERR_INVALID_ARGUMENT, "tra_detokenize");
    bad[1] = (int32_t)info.n_vocab;
    EXPECT(tra_detokenize(m, bad, 2, text, sizeof text, &len), TRA_ERR_INVALID_ARGUMENT, "tra_detokenize");
    EXPECT(tra_token_to_piece(m, ids[n - 1], text, sizeof text, &len), TRA_OK, "");
    EXPECT(tra_token_to_piece(m, (int32_t)info.n_vocab, text, sizeof text, &len),
           TRA_ERR_INVALID_ARGUMENT, "tra_token_to_piece");

    /* Logits: none before anything is evaluated; after feeding, the greedy token is their argmax. */
    tra_session *s = new_session(m, greedy(4));
    const float *logits = NULL;
    size_t nl = 0;
    EXPECT(tra_session_logits(s, &logits, &nl), TRA_ERR_INVALID_ARGUMENT, "tra_session_logits");
    EXPECT(tra_session_feed(s, bad, 2), TRA_ERR_INVALID_ARGUMENT, "tra_session_feed");
    EXPECT(tra_session_feed(s, ids, n), TRA_OK, "");
    EXPECT(tra_session_logits(s, &logits, &nl), TRA_OK, "");
    CHECK(nl == info.n_vocab && logits, "logits: %zu", nl);
    int32_t best = 0;
    for (size_t i = 1; i < nl; i++)
        if (logits[i] > logits[best]) best = (int32_t)i;
    EXPECT(tra_session_prompt_tokens(s, ids, 0), TRA_OK, "");
    int32_t tok = -1;
    EXPECT(tra_session_next(s, text, sizeof text, &len, &tok), TRA_OK, "");
    CHECK(tok == best, "greedy token %d, argmax %d", tok, best);
    /* The token just generated is evaluated by tra_session_logits. */
    size_t pos0 = 0, pos1 = 0;
    EXPECT(tra_session_position(s, &pos0), TRA_OK, "");
    EXPECT(tra_session_logits(s, &logits, &nl), TRA_OK, "");
    EXPECT(tra_session_position(s, &pos1), TRA_OK, "");
    CHECK(pos1 == pos0 + 1 && pos0 == n, "positions %zu -> %zu (prompt %zu)", pos0, pos1, n);
    tra_session_free(s);
}

/* Generate to the end, recording the token ids (at most cap). */
static tra_status collect_ids(tra_session *s, int32_t *ids, int cap, int *n) {
    char buf[512];
    size_t len;
    int32_t tok;
    tra_status st;
    *n = 0;
    while ((st = tra_session_next(s, buf, sizeof buf, &len, &tok)) == TRA_OK)
        if (*n < cap) ids[(*n)++] = tok;
    return st;
}

static void test_state(const tra_model *m) {
    char buf[256];
    size_t len, need = 0;
    int32_t tok, ta[64], tb[64];
    int na, nb;
    tra_session *a = new_session(m, greedy(6));
    EXPECT(tra_session_prompt(a, "hello"), TRA_OK, "");
    EXPECT(tra_session_next(a, buf, sizeof buf, &len, &tok), TRA_OK, "");
    unsigned char dummy[1];
    EXPECT(tra_session_save_state(a, dummy, 0, &need), TRA_ERR_BUFFER_TOO_SMALL, "tra_session_save_state");
    CHECK(need > 64, "state size %zu", need);
    unsigned char *blob = malloc(need);
    size_t got = 0;
    EXPECT(tra_session_save_state(a, blob, need, &got), TRA_OK, "");
    CHECK(got == need, "state %zu of %zu bytes", got, need);

    /* Saving does not end the generation: a goes on (5 more tokens); b continues from
     * the blob (6 tokens) with the same tokens. (Not the same text: a character left
     * incomplete by the first piece is in a's stream, not in the state.) */
    tra_session *b = new_session(m, greedy(6));
    EXPECT(tra_session_load_state(b, blob, got), TRA_OK, "");
    CHECK(collect_ids(a, ta, 64, &na) == TRA_END, "a ends");
    EXPECT(tra_session_prompt(b, ""), TRA_OK, "");
    CHECK(collect_ids(b, tb, 64, &nb) == TRA_END, "b ends");
    CHECK(nb >= na && memcmp(ta, tb, (size_t)na * sizeof ta[0]) == 0,
          "restored session differs: %d tokens, %d tokens", na, nb);

    /* Corrupted, truncated or foreign bytes are refused, and the session is unchanged. */
    size_t pos0, pos1;
    EXPECT(tra_session_position(b, &pos0), TRA_OK, "");
    blob[got / 2] ^= 0x5a;
    EXPECT(tra_session_load_state(b, blob, got), TRA_ERR_FORMAT, "tra_session_load_state");
    blob[got / 2] ^= 0x5a;
    EXPECT(tra_session_load_state(b, blob, got - 1), TRA_ERR_FORMAT, "tra_session_load_state");
    EXPECT(tra_session_load_state(b, (const uint8_t *)"hello", 5), TRA_ERR_FORMAT, "tra_session_load_state");
    EXPECT(tra_session_position(b, &pos1), TRA_OK, "");
    CHECK(pos0 == pos1, "position changed by a refused load: %zu -> %zu", pos0, pos1);
    /* Too many positions for a smaller context. */
    tra_session_params p = greedy(6);
    p.context_len = 2;
    tra_session *c = new_session(m, p);
    EXPECT(tra_session_load_state(c, blob, got), TRA_ERR_CONTEXT_FULL, "tra_session_load_state");
    tra_session_free(c);
    free(blob);
    tra_session_free(a);
    tra_session_free(b);
}

struct shared_run {
    const tra_model *m;
    char text[2048];
    int pieces;
    tra_status st;
};

static void *run_own_session(void *arg) {
    struct shared_run *r = arg;
    tra_session_params p = greedy(16);
    tra_session *s = NULL;
    r->st = tra_session_new(r->m, &p, &s);
    if (r->st == TRA_OK) r->st = tra_session_prompt(s, "hello");
    if (r->st == TRA_OK) r->st = collect(s, r->text, sizeof r->text, &r->pieces);
    tra_session_free(s);
    return NULL;
}

/* One model, four threads, a session each, at the same time: same text as alone. */
static void test_shared_model(const tra_model *m) {
    struct shared_run ref = {m, {0}, 0, TRA_OK}, runs[4];
    pthread_t th[4];
    run_own_session(&ref);
    CHECK(ref.st == TRA_END, "reference run: %d", (int)ref.st);
    for (int i = 0; i < 4; i++) {
        memset(&runs[i], 0, sizeof runs[i]);
        runs[i].m = m;
        CHECK(pthread_create(&th[i], NULL, run_own_session, &runs[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(runs[i].st == TRA_END && runs[i].pieces == ref.pieces && strcmp(runs[i].text, ref.text) == 0,
              "thread %d: status %d, \"%s\" vs \"%s\"", i, (int)runs[i].st, runs[i].text, ref.text);
    }
}

/* tra_model_repack: NULL model, a model with a session, and the opt-in itself (which may
   do nothing here: then 0 bytes), after which the model generates as before. */
static void test_repack(const char *model_path) {
    size_t bytes = 12345;
    EXPECT_NULL(tra_model_repack(NULL, &bytes), "tra_model_repack");
    tra_model *m = NULL;
    EXPECT(tra_model_open(model_path, &m), TRA_OK, "");
    tra_session *s = new_session(m, greedy(4));
    EXPECT(tra_model_repack(m, &bytes), TRA_ERR_INVALID_ARGUMENT, "tra_model_repack");
    char before[2048], after[2048];
    int n;
    EXPECT(tra_session_prompt(s, "hello"), TRA_OK, "");
    CHECK(collect(s, before, sizeof before, &n) == TRA_END && n >= 1, "generation");
    tra_session_free(s);
    EXPECT(tra_model_repack(m, &bytes), TRA_OK, "");
    CHECK(bytes != 12345, "tra_model_repack must write *bytes_out");
    EXPECT(tra_model_repack(m, NULL), TRA_OK, "");
    s = new_session(m, greedy(4));
    EXPECT(tra_session_prompt(s, "hello"), TRA_OK, "");
    CHECK(collect(s, after, sizeof after, &n) == TRA_END && n >= 1, "generation after repack");
    CHECK(strcmp(before, after) == 0, "repacked: \"%s\" vs \"%s\"", after, before);
    tra_session_free(s);
    tra_model_free(m);
}

static void test_model_freed_first(const char *model_path) {
    tra_model *m = NULL;
    EXPECT(tra_model_open(model_path, &m), TRA_OK, "");
    tra_session *s = new_session(m, greedy(4));
    tra_model_free(m); /* the session keeps the model alive */
    char text[2048];
    int n;
    EXPECT(tra_session_prompt(s, "hello"), TRA_OK, "");
    CHECK(collect(s, text, sizeof text, &n) == TRA_END && n >= 1, "generation after model free");
    tra_session_free(s);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: robust MODEL.gguf SCRATCH_DIR\n");
        return 2;
    }
    tra_model *m = NULL;
    if (tra_model_open(argv[1], &m) != TRA_OK) {
        fprintf(stderr, "robust: %s\n", tra_last_error());
        return 1;
    }
    tra_session *s = new_session(m, greedy(4));

    test_null_arguments(m, s);
    test_files(argv[1], argv[2]);
    test_params(m);
    test_end_after_end(m);
    test_small_buffer(m);
    test_cancel(m);
    test_callback(m);
    test_tokens_and_logits(m);
    test_state(m);
    test_shared_model(m);
    test_model_freed_first(argv[1]);
    test_repack(argv[1]);

    tra_session_free(s);
    tra_model_free(m);
    printf("robust: %d checks, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
