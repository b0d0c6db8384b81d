/* One Argon2id hash of the study's password and salt, timed, with the
 * reference implementation (libargon2) or libsodium's crypto_pwhash.
 * Usage: hash-c argon2|sodium ROUNDS; prints "ms_median base64(raw hash)". */
#include <argon2.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define M_KIB 19456
#define T 2
#define OUT 32

static const char *PASSWORD = "violet kettle harbour";
static const unsigned char SALT[16] = "latchkey-salt-16";

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int hash(const char *impl, unsigned char *out) {
    if (strcmp(impl, "sodium") == 0) {
        return crypto_pwhash(out, OUT, PASSWORD, strlen(PASSWORD), SALT, T,
                             (size_t)M_KIB * 1024, crypto_pwhash_ALG_ARGON2ID13);
    }
    return argon2id_hash_raw(T, M_KIB, 1, PASSWORD, strlen(PASSWORD), SALT,
                             sizeof SALT, out, OUT);
}

int main(int argc, char **argv) {
    if (argc != 3 || sodium_init() < 0) return 2;
    int rounds = atoi(argv[2]);
    unsigned char out[OUT];
    double *times = calloc(rounds, sizeof *times);
    if (hash(argv[1], out) != 0) return 1; /* warm-up */
    for (int i = 0; i < rounds; i++) {
        double start = now_ms();
        if (hash(argv[1], out) != 0) return 1;
        times[i] = now_ms() - start;
    }
    qsort(times, rounds, sizeof *times, cmp);
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, out, OUT, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    printf("%.2f %s\n", times[rounds / 2], b64);
    return 0;
}
