/* Unit tests for the InfluxDB client's pure part: gzip bodies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "bridge/clients/influxdb.h"
#include "unit.h"

static void test_gzip_round_trip(void)
{
    char body[20000];
    size_t used = 0;
    for (int i = 0; used + 80 < sizeof body; i++) {
        int n =
            snprintf(body + used, sizeof body - used,
                     "reload,host=node\\ 1,task=Reload\\ Sales seq=%d,ok=true %d\n", i, 1000 + i);
        used += (size_t)n;
    }
    unsigned char *gz = NULL;
    size_t gz_length = 0;
    UNIT_CHECK(influxdb_gzip(body, used, &gz, &gz_length) == BUTLER_OK);
    UNIT_CHECK(gz != NULL && gz_length < used / 4);
    UNIT_CHECK(gz_length > 10 && gz[0] == 0x1f && gz[1] == 0x8b); /* a gzip member */
    /* What InfluxDB will read back. */
    char *plain = malloc(used + 1);
    z_stream stream = {0};
    UNIT_CHECK(plain != NULL && inflateInit2(&stream, 15 + 16) == Z_OK);
    stream.next_in = gz;
    stream.avail_in = (uInt)gz_length;
    stream.next_out = (Bytef *)plain;
    stream.avail_out = (uInt)used + 1;
    UNIT_CHECK(inflate(&stream, Z_FINISH) == Z_STREAM_END);
    UNIT_CHECK(stream.total_out == used && memcmp(plain, body, used) == 0);
    inflateEnd(&stream);
    free(plain);
    free(gz);
}

static void test_gzip_only_when_smaller(void)
{
    /* Random-looking bytes do not shrink: the caller sends them as they are. */
    unsigned char noise[2048];
    unsigned state = 12345;
    for (size_t i = 0; i < sizeof noise; i++) {
        state = state * 1103515245u + 12345u;
        noise[i] = (unsigned char)(state >> 16);
    }
    unsigned char *gz = NULL;
    size_t gz_length = 0;
    UNIT_CHECK(influxdb_gzip((const char *)noise, sizeof noise, &gz, &gz_length) ==
               BUTLER_ERR_TOO_LARGE);
    UNIT_CHECK(gz == NULL && gz_length == 0);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_gzip_round_trip),
    UNIT_TEST(test_gzip_only_when_smaller),
    {0},
};
