/* The MPI example's training program: every rank contributes rank + 1, MPI_Allreduce sums them,
 * and each rank checks the sum. Rank 0 writes the model (the sum) to $SM_MODEL_DIR.
 *
 * Arguments (smc passes hyperparameters as --name value):
 *   --fail-rank R --exit-code C   rank R exits with code C before the allreduce
 *   --sleep-s S                   every rank sleeps S seconds before the allreduce
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    /* First line before MPI_Init: the bench measures the launch, not Open MPI's wire-up. */
    double started_s = now_s();
    char host[256] = "";
    gethostname(host, sizeof host);
    const char *env_rank = getenv("OMPI_COMM_WORLD_RANK");
    printf("first_line rank=%s host=%s t=%.6f\n", env_rank ? env_rank : "?", host, started_s);
    fflush(stdout);

    int fail_rank = -1, exit_code = 3;
    double sleep_s = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--fail-rank")) fail_rank = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--exit-code")) exit_code = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sleep-s")) sleep_s = atof(argv[i + 1]);
    }

    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == fail_rank) {
        fprintf(stderr, "rank %d on %s: failing on purpose with code %d\n", rank, host, exit_code);
        fflush(stderr);
        exit(exit_code);
    }
    if (sleep_s > 0) usleep((useconds_t)(sleep_s * 1e6));

    long value = rank + 1, sum = 0;
    MPI_Allreduce(&value, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    long expected = (long)size * (size + 1) / 2;
    printf("allreduce rank=%d size=%d host=%s sum=%ld expected=%ld %s\n", rank, size, host, sum, expected,
           sum == expected ? "ok" : "WRONG");
    fflush(stdout);

    if (rank == 0) {
        const char *model_dir = getenv("SM_MODEL_DIR");
        char path[4096];
        snprintf(path, sizeof path, "%s/allreduce.txt", model_dir ? model_dir : "/opt/ml/model");
        FILE *f = fopen(path, "w");
        if (!f) { perror(path); MPI_Abort(MPI_COMM_WORLD, 2); }
        fprintf(f, "size=%d sum=%ld\n", size, sum);
        fclose(f);
    }
    MPI_Finalize();
    return sum == expected ? 0 : 1;
}
