/* The floor for a recorder's storage engine, for benchmarks/test_bench_storage_vs_c.py:
 * STREAMS streams of SECONDS s of 30 fps packets (a key frame of 5 * P_SIZE bytes then 29
 * of P_SIZE), interleaved frame by frame; each packet is write(2)n to its stream's file and
 * hashed with SHA-1, and every 60 s of a stream its file is fsynced, closed and a new one
 * opened (a recording).  No index, no database: what any recorder must at least do.
 *
 * usage: write_sha1_loop DIR STREAMS SECONDS P_SIZE
 */
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FPS 30
#define ROTATE_SECONDS 60

static int open_recording(const char *dir, int stream, int number) {
    char path[4096];
    snprintf(path, sizeof path, "%s/s%d-%d", dir, stream, number);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror(path); exit(1); }
    return fd;
}

static void finish(int fd, SHA_CTX *sha) {
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1_Final(digest, sha);
    if (fsync(fd) != 0 || close(fd) != 0) { perror("fsync/close"); exit(1); }
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s DIR STREAMS SECONDS P_SIZE\n", argv[0]); return 2; }
    const char *dir = argv[1];
    int streams = atoi(argv[2]), seconds = atoi(argv[3]);
    size_t p_size = (size_t)atol(argv[4]);
    unsigned char *key = malloc(5 * p_size), *other = malloc(p_size);
    for (size_t i = 0; i < 5 * p_size; i++) key[i] = (unsigned char)(i * 2654435761u >> 13);
    memcpy(other, key, p_size);
    int *fds = calloc(streams, sizeof *fds);
    SHA_CTX *shas = calloc(streams, sizeof *shas);
    int *numbers = calloc(streams, sizeof *numbers);
    for (int s = 0; s < streams; s++) { fds[s] = open_recording(dir, s, 0); SHA1_Init(&shas[s]); }
    for (long n = 0; n < (long)seconds * FPS; n++) {
        int is_key = n % FPS == 0;
        const unsigned char *data = is_key ? key : other;
        size_t size = is_key ? 5 * p_size : p_size;
        for (int s = 0; s < streams; s++) {
            if (is_key && n > 0 && n % (ROTATE_SECONDS * FPS) == 0) {
                finish(fds[s], &shas[s]);
                fds[s] = open_recording(dir, s, ++numbers[s]);
                SHA1_Init(&shas[s]);
            }
            for (size_t done = 0; done < size;) {
                ssize_t w = write(fds[s], data + done, size - done);
                if (w < 0) { perror("write"); return 1; }
                done += (size_t)w;
            }
            SHA1_Update(&shas[s], data, size);
        }
    }
    for (int s = 0; s < streams; s++) finish(fds[s], &shas[s]);
    return 0;
}
