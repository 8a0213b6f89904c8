/*
 * Unit tests: the MQTT link reports "not connected" (what /health says) while
 * its network loop is stuck, not only once the broker is gone. A minimal
 * fake broker on loopback accepts the CONNECT, answers CONNACK and sends one
 * PUBLISH whose handler blocks until the test has seen the link go stale.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bridge/core/clock.h"
#include "bridge/link/mqtt_link.h"
#include "config/config.h"
#include "tests/unit/unit.h"

struct fake_broker {
    int listener;
    int port;
    pthread_t thread;
};

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static bool handler_entered, stale_seen;

/* Read one MQTT packet and drop it; false when the peer closed. */
static bool skip_packet(int fd)
{
    unsigned char byte;
    if (read(fd, &byte, 1) != 1)
        return false;
    size_t length = 0;
    for (int shift = 0; shift < 28; shift += 7) {
        if (read(fd, &byte, 1) != 1)
            return false;
        length |= (size_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80))
            break;
    }
    unsigned char buffer[512];
    while (length > 0) {
        ssize_t got = read(fd, buffer, length < sizeof buffer ? length : sizeof buffer);
        if (got <= 0)
            return false;
        length -= (size_t)got;
    }
    return true;
}

static void *broker_main(void *argument)
{
    struct fake_broker *broker = argument;
    int fd = accept(broker->listener, NULL, NULL);
    if (fd < 0)
        return NULL;
    /* CONNECT, then CONNACK (v5: flags, reason, no properties) and one QoS 0
     * PUBLISH on "t" (topic length, topic, no properties, payload "x"). */
    static const unsigned char connack[] = {0x20, 0x03, 0x00, 0x00, 0x00};
    static const unsigned char publish[] = {0x30, 0x05, 0x00, 0x01, 't', 0x00, 'x'};
    if (skip_packet(fd) && write(fd, connack, sizeof connack) == (ssize_t)sizeof connack &&
        write(fd, publish, sizeof publish) == (ssize_t)sizeof publish)
        while (skip_packet(fd))
            ; /* the online status, PINGREQs, DISCONNECT */
    close(fd);
    return NULL;
}

/* Network thread: block like a handler stuck on something, until the test
 * saw the link report the stall (bounded, so a failing test still ends). */
static void blocking_handler(const struct mqtt_message *message, void *context)
{
    (void)message;
    (void)context;
    struct timespec deadline;
    clock_deadline_after(CLOCK_REALTIME, 15000, &deadline);
    pthread_mutex_lock(&mutex);
    handler_entered = true;
    pthread_cond_broadcast(&changed);
    while (!stale_seen)
        if (pthread_cond_timedwait(&changed, &mutex, &deadline) != 0)
            break;
    pthread_mutex_unlock(&mutex);
}

static bool wait_for(bool (*condition)(struct mqtt_link *), struct mqtt_link *link, int ms)
{
    uint64_t until = clock_monotonic_ms() + (uint64_t)ms;
    while (clock_monotonic_ms() < until) {
        if (condition(link))
            return true;
        struct timespec pause = {0, 20 * 1000000L};
        nanosleep(&pause, NULL);
    }
    return false;
}

static bool is_connected(struct mqtt_link *link)
{
    return mqtt_link_connected(link);
}

static bool is_not_connected(struct mqtt_link *link)
{
    return !mqtt_link_connected(link);
}

static void test_a_stuck_network_loop_is_not_connected(void)
{
    struct fake_broker broker = {.listener = socket(AF_INET, SOCK_STREAM, 0)};
    UNIT_CHECK(broker.listener >= 0);
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    UNIT_CHECK(bind(broker.listener, (struct sockaddr *)&address, size) == 0);
    UNIT_CHECK(listen(broker.listener, 1) == 0);
    UNIT_CHECK(getsockname(broker.listener, (struct sockaddr *)&address, &size) == 0);
    broker.port = ntohs(address.sin_port);
    UNIT_CHECK(pthread_create(&broker.thread, NULL, broker_main, &broker) == 0);

    char yaml[256];
    snprintf(yaml, sizeof yaml,
             "mqtt:\n  host: 127.0.0.1\n  port: %d\n  keepalive_s: 5\n  client_id: unit-link\n",
             broker.port);
    struct butler_config config;
    UNIT_CHECK(config_load_buffer("test.yaml", yaml, strlen(yaml), false, &config, stderr) ==
               BUTLER_OK);
    struct mqtt_link *link = NULL;
    UNIT_CHECK(mqtt_link_create(&config, 0, &link) == BUTLER_OK);
    mqtt_link_set_handler(link, blocking_handler, NULL);
    UNIT_CHECK(mqtt_link_start(link) == BUTLER_OK);

    /* The PUBLISH arrives right behind the CONNACK: the loop gets stuck in
     * the handler, with the connected flag set and no thread to clear it. */
    pthread_mutex_lock(&mutex);
    struct timespec deadline;
    clock_deadline_after(CLOCK_REALTIME, 10000, &deadline);
    while (!handler_entered)
        if (pthread_cond_timedwait(&changed, &mutex, &deadline) != 0)
            break;
    bool entered = handler_entered;
    pthread_mutex_unlock(&mutex);
    UNIT_CHECK(entered);
    /* Half the keepalive (2.5 s) later the link must say so. */
    bool went_stale = wait_for(is_not_connected, link, 10000);
    UNIT_CHECK(went_stale);
    UNIT_CHECK(mqtt_link_loop_age_ms(link) >= 2000);
    pthread_mutex_lock(&mutex);
    stale_seen = true;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&mutex);
    /* Unstuck, the loop turns again and the link is connected again. */
    UNIT_CHECK(wait_for(is_connected, link, 10000));

    mqtt_link_destroy(link);
    pthread_join(broker.thread, NULL);
    close(broker.listener);
    config_free(&config);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_a_stuck_network_loop_is_not_connected),
    {0},
};
