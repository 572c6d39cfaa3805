/*
 * A negative control for the valgrind runs of tests/ffi.rs: a program that never frees
 * its session must make memcheck fail (so a clean run means something).
 * Usage: leak MODEL.gguf
 */
#include <stdio.h>

#include "tramontane.h"

int main(int argc, char **argv) {
    tra_model *m = NULL;
    tra_session *s = NULL;
    if (argc != 2 || tra_model_open(argv[1], &m) != TRA_OK || tra_session_new(m, NULL, &s) != TRA_OK) {
        fprintf(stderr, "leak: %s\n", tra_last_error());
        return 2;
    }
    tra_model_free(m);
    s = NULL; /* lost */
    return 0;
}
