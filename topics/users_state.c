/*
 * Active-user state; see users_state.h.
 *
 * Slots hold users; a doubly linked list through the slots orders them by
 * last activity (oldest first), so expiry and eviction take from the head.
 * The index is open addressing with linear probing over slot numbers
 * (backward-shift deletion, no tombstones), at most half full. Names live in
 * one arena addressed by offset (realloc may move it); a removed name is
 * garbage until the arena is compacted.
 */
#include "topics/users_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bridge/core/clock.h"

enum {
    SLOTS_INITIAL = 1024,
    ARENA_INITIAL = 16384,
    HOST_NONE = 0xFFFF, /* host not known (rebuilt from a summary without enough perHost) */
    SUMMARY_MMAP_MIN = 128 * 1024, /* summaries this big get a mapping of their own */
    SUMMARY_HEADER = 16,           /* the block's size, before the text */
};

#define NIL UINT32_MAX

struct slot {
    uint32_t name_offset;
    uint16_t name_length; /* 0 = free slot */
    uint16_t host;
    uint32_t last_s; /* last activity, whole seconds of the caller's clock */
    uint32_t older, newer;
};

struct host {
    char *name;
    size_t users;
};

struct users_state {
    size_t max_users;
    struct slot *slots;
    size_t slot_capacity, count;
    uint32_t free_head; /* free slots chained through `older` */
    uint32_t oldest, newest;
    uint32_t *index; /* slot numbers; NIL = empty */
    size_t index_mask;
    char *arena;
    size_t arena_used, arena_capacity, arena_garbage;
    struct host hosts[USERS_HOSTS_MAX];
    size_t host_count;
};

static uint64_t hash_name(const char *name, size_t length)
{
    uint64_t hash = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < length; i++) {
        hash ^= (unsigned char)name[i];
        hash *= 1099511628211ULL;
    }
    return hash;
}

static const char *slot_name(const struct users_state *state, const struct slot *slot)
{
    return state->arena + slot->name_offset;
}

static bool slot_is(const struct users_state *state, uint32_t number, const char *name,
                    size_t length)
{
    const struct slot *slot = &state->slots[number];
    return slot->name_length == length && memcmp(slot_name(state, slot), name, length) == 0;
}

/* Position in the index of `name`, or of the empty entry where it would go. */
static size_t index_find(const struct users_state *state, const char *name, size_t length)
{
    size_t i = (size_t)hash_name(name, length) & state->index_mask;
    while (state->index[i] != NIL && !slot_is(state, state->index[i], name, length))
        i = (i + 1) & state->index_mask;
    return i;
}

/* Remove index entry `i`, shifting back the entries of its probe run. */
static void index_delete(struct users_state *state, size_t i)
{
    size_t hole = i;
    size_t j = i;
    for (;;) {
        j = (j + 1) & state->index_mask;
        uint32_t number = state->index[j];
        if (number == NIL)
            break;
        const struct slot *slot = &state->slots[number];
        size_t home =
            (size_t)hash_name(slot_name(state, slot), slot->name_length) & state->index_mask;
        /* Move it into the hole unless its home lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            state->index[hole] = number;
            hole = j;
        }
    }
    state->index[hole] = NIL;
}

/* Build a fresh index of `size` entries (a power of two) over the used slots. */
static enum butler_status index_rebuild(struct users_state *state, size_t size)
{
    uint32_t *index = malloc(size * sizeof *index);
    if (index == NULL)
        return BUTLER_ERR_NOMEM;
    memset(index, 0xFF, size * sizeof *index);
    free(state->index);
    state->index = index;
    state->index_mask = size - 1;
    for (uint32_t n = state->oldest; n != NIL; n = state->slots[n].newer) {
        size_t i =
            index_find(state, slot_name(state, &state->slots[n]), state->slots[n].name_length);
        state->index[i] = n;
    }
    return BUTLER_OK;
}

enum butler_status users_state_create(size_t max_users, struct users_state **out)
{
    *out = NULL;
    if (max_users == 0 || max_users >= NIL / 2)
        return BUTLER_ERR_INVALID;
    struct users_state *state = calloc(1, sizeof *state);
    if (state == NULL)
        return BUTLER_ERR_NOMEM;
    state->max_users = max_users;
    state->free_head = state->oldest = state->newest = NIL;
    size_t size = 1;
    while (size < 2 * SLOTS_INITIAL)
        size <<= 1;
    if (index_rebuild(state, size) != BUTLER_OK) {
        users_state_free(state);
        return BUTLER_ERR_NOMEM;
    }
    *out = state;
    return BUTLER_OK;
}

void users_state_free(struct users_state *state)
{
    if (state == NULL)
        return;
    for (size_t i = 0; i < state->host_count; i++)
        free(state->hosts[i].name);
    free(state->slots);
    free(state->index);
    free(state->arena);
    free(state);
}

size_t users_state_count(const struct users_state *state)
{
    return state->count;
}

/* ---- the activity list ---- */

static void list_unlink(struct users_state *state, uint32_t n)
{
    struct slot *slot = &state->slots[n];
    if (slot->older != NIL)
        state->slots[slot->older].newer = slot->newer;
    else
        state->oldest = slot->newer;
    if (slot->newer != NIL)
        state->slots[slot->newer].older = slot->older;
    else
        state->newest = slot->older;
    slot->older = slot->newer = NIL;
}

static void list_append(struct users_state *state, uint32_t n)
{
    struct slot *slot = &state->slots[n];
    slot->older = state->newest;
    slot->newer = NIL;
    if (state->newest != NIL)
        state->slots[state->newest].newer = n;
    else
        state->oldest = n;
    state->newest = n;
}

/* ---- hosts ---- */

/* The interned number of `host`; HOST_NONE when the table is full or out of memory. */
static uint16_t host_number(struct users_state *state, const char *host)
{
    for (size_t i = 0; i < state->host_count; i++)
        if (strcmp(state->hosts[i].name, host) == 0)
            return (uint16_t)i;
    if (state->host_count >= USERS_HOSTS_MAX)
        return HOST_NONE;
    char *copy = strdup(host);
    if (copy == NULL)
        return HOST_NONE;
    state->hosts[state->host_count] = (struct host){copy, 0};
    return (uint16_t)state->host_count++;
}

static void host_count_add(struct users_state *state, uint16_t host, int delta)
{
    if (host != HOST_NONE)
        state->hosts[host].users = (size_t)((long long)state->hosts[host].users + delta);
}

/* ---- the name arena ---- */

/* Copy every live name into a new arena with room for `extra` more bytes. */
static enum butler_status arena_compact(struct users_state *state, size_t extra)
{
    size_t live = state->arena_used - state->arena_garbage;
    size_t capacity = (live + extra) * 2;
    if (capacity < ARENA_INITIAL)
        capacity = ARENA_INITIAL;
    char *arena = malloc(capacity);
    if (arena == NULL)
        return BUTLER_ERR_NOMEM;
    size_t used = 0;
    for (uint32_t n = state->oldest; n != NIL; n = state->slots[n].newer) {
        struct slot *slot = &state->slots[n];
        memcpy(arena + used, slot_name(state, slot), slot->name_length);
        slot->name_offset = (uint32_t)used;
        used += slot->name_length;
    }
    free(state->arena);
    state->arena = arena;
    state->arena_used = used;
    state->arena_capacity = capacity;
    state->arena_garbage = 0;
    return BUTLER_OK;
}

/* Room for `length` more bytes at arena_used. */
static enum butler_status arena_reserve(struct users_state *state, size_t length)
{
    if (state->arena_used + length <= state->arena_capacity)
        return BUTLER_OK;
    if (state->arena_garbage > 0 && state->arena_garbage >= state->arena_used / 2)
        return arena_compact(state, length);
    size_t capacity = state->arena_capacity ? state->arena_capacity * 2 : ARENA_INITIAL;
    while (capacity < state->arena_used + length)
        capacity *= 2;
    if (capacity > UINT32_MAX)
        return arena_compact(state, length);
    char *arena = realloc(state->arena, capacity);
    if (arena == NULL)
        return BUTLER_ERR_NOMEM;
    state->arena = arena;
    state->arena_capacity = capacity;
    return BUTLER_OK;
}

/* ---- slots ---- */

static void remove_slot(struct users_state *state, uint32_t n)
{
    struct slot *slot = &state->slots[n];
    index_delete(state, index_find(state, slot_name(state, slot), slot->name_length));
    list_unlink(state, n);
    host_count_add(state, slot->host, -1);
    state->arena_garbage += slot->name_length;
    slot->name_length = 0;
    slot->older = state->free_head;
    state->free_head = n;
    state->count--;
}

/* A free slot number, growing the slot array (and the index) up to max_users. */
static enum butler_status take_slot(struct users_state *state, uint32_t *out)
{
    if (state->free_head == NIL) {
        size_t capacity = state->slot_capacity ? state->slot_capacity * 2 : SLOTS_INITIAL;
        if (capacity > state->max_users)
            capacity = state->max_users;
        if (capacity <= state->slot_capacity)
            return BUTLER_ERR_FULL;
        struct slot *slots = realloc(state->slots, capacity * sizeof *slots);
        if (slots == NULL)
            return BUTLER_ERR_NOMEM;
        state->slots = slots;
        size_t index_size = state->index_mask + 1;
        while (index_size < 2 * capacity)
            index_size <<= 1;
        if (index_size != state->index_mask + 1 && index_rebuild(state, index_size) != BUTLER_OK) {
            /* Keep the bigger array but do not use the new slots yet. */
            return BUTLER_ERR_NOMEM;
        }
        for (size_t i = capacity; i-- > state->slot_capacity;) {
            slots[i] = (struct slot){.older = state->free_head, .newer = NIL};
            state->free_head = (uint32_t)i;
        }
        state->slot_capacity = capacity;
    }
    *out = state->free_head;
    state->free_head = state->slots[*out].older;
    return BUTLER_OK;
}

/* "DIR\user" into `out` (USERS_NAME_MAX bytes), cut on a UTF-8 boundary. */
static size_t make_name(const char *directory, const char *user, char out[USERS_NAME_MAX])
{
    int written = snprintf(out, USERS_NAME_MAX, "%s\\%s", directory, user);
    size_t length = written < 0 ? 0 : (size_t)written;
    if (length >= USERS_NAME_MAX) {
        length = USERS_NAME_MAX - 1;
        while (length > 0 && ((unsigned char)out[length] & 0xC0) == 0x80)
            length--;
        out[length] = '\0';
    }
    return length;
}

static uint32_t seconds(uint64_t now_ms)
{
    return (uint32_t)(now_ms / 1000u);
}

/* Mark user `n` seen now on `host`. */
static void refresh(struct users_state *state, uint32_t n, uint16_t host, uint64_t now_ms,
                    struct users_change *change)
{
    struct slot *slot = &state->slots[n];
    slot->last_s = seconds(now_ms);
    if (host != slot->host && host != HOST_NONE) {
        host_count_add(state, slot->host, -1);
        host_count_add(state, host, +1);
        slot->host = host;
        change->changed = true;
    }
    list_unlink(state, n);
    list_append(state, n);
}

/* Insert or refresh the user named `name` (length bytes). */
static enum butler_status upsert(struct users_state *state, const char *name, size_t length,
                                 uint16_t host, uint64_t now_ms, struct users_change *change)
{
    size_t i = index_find(state, name, length);
    if (state->index[i] != NIL) {
        refresh(state, state->index[i], host, now_ms, change);
        return BUTLER_OK;
    }
    if (state->count >= state->max_users) {
        remove_slot(state, state->oldest);
        change->evicted = true;
        change->changed = true;
    }
    if (arena_reserve(state, length) != BUTLER_OK)
        return BUTLER_ERR_NOMEM;
    uint32_t n;
    enum butler_status status = take_slot(state, &n);
    if (status != BUTLER_OK)
        return status;
    memcpy(state->arena + state->arena_used, name, length);
    state->slots[n] = (struct slot){
        .name_offset = (uint32_t)state->arena_used,
        .name_length = (uint16_t)length,
        .host = host,
        .last_s = seconds(now_ms),
        .older = NIL,
        .newer = NIL,
    };
    state->arena_used += length;
    host_count_add(state, host, +1);
    list_append(state, n);
    /* The index may have been rebuilt by take_slot: look the place up again. */
    state->index[index_find(state, name, length)] = n;
    state->count++;
    change->changed = true;
    return BUTLER_OK;
}

enum butler_status users_state_start(struct users_state *state, const char *directory,
                                     const char *user, const char *host, uint64_t now_ms,
                                     struct users_change *change)
{
    char name[USERS_NAME_MAX];
    size_t length = make_name(directory, user, name);
    return upsert(state, name, length, host_number(state, host), now_ms, change);
}

void users_state_touch(struct users_state *state, const char *directory, const char *user,
                       const char *host, uint64_t now_ms, struct users_change *change)
{
    char name[USERS_NAME_MAX];
    size_t length = make_name(directory, user, name);
    size_t i = index_find(state, name, length);
    if (state->index[i] != NIL)
        refresh(state, state->index[i], host_number(state, host), now_ms, change);
}

void users_state_stop(struct users_state *state, const char *directory, const char *user,
                      struct users_change *change)
{
    char name[USERS_NAME_MAX];
    size_t length = make_name(directory, user, name);
    size_t i = index_find(state, name, length);
    if (state->index[i] == NIL)
        return;
    remove_slot(state, state->index[i]);
    change->changed = true;
}

size_t users_state_expire(struct users_state *state, uint64_t now_ms, uint64_t idle_ms)
{
    size_t removed = 0;
    uint64_t now_s = now_ms / 1000u, idle_s = (idle_ms + 999u) / 1000u;
    while (state->oldest != NIL && (uint64_t)state->slots[state->oldest].last_s + idle_s < now_s) {
        remove_slot(state, state->oldest);
        removed++;
    }
    return removed;
}

/* ---- the summary ---- */

/* Bytes `text` takes as a JSON string body (without the quotes). */
static size_t escaped_length(const char *text, size_t length)
{
    size_t out = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        out += (c == '"' || c == '\\') ? 2 : c < 0x20 ? 6 : 1;
    }
    return out;
}

static char *append_escaped(char *out, const char *text, size_t length)
{
    static const char hex[] = "0123456789abcdef";
    *out++ = '"';
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = (char)c;
        } else if (c < 0x20) {
            memcpy(out, "\\u00", 4);
            out[4] = hex[c >> 4];
            out[5] = hex[c & 15];
            out += 6;
        } else {
            *out++ = (char)c;
        }
    }
    *out++ = '"';
    return out;
}

char *users_state_summary(const struct users_state *state, uint64_t wall_ms, size_t *length)
{
    char at[40], head[64];
    clock_format_iso8601(wall_ms, at, sizeof at);
    int head_length = snprintf(head, sizeof head, "{\"count\":%zu,\"users\":[", state->count);
    /* Measure, allocate once, then write: no growing buffer. */
    size_t total = (size_t)head_length;
    for (uint32_t n = state->oldest; n != NIL; n = state->slots[n].newer)
        total +=
            escaped_length(slot_name(state, &state->slots[n]), state->slots[n].name_length) + 3;
    total += sizeof "],\"perHost\":{" + sizeof "},\"at\":\"\"}" + strlen(at);
    for (size_t h = 0; h < state->host_count; h++)
        total += escaped_length(state->hosts[h].name, strlen(state->hosts[h].name)) + 4 + 21;
    size_t block = SUMMARY_HEADER + total + 1;
    char *base = NULL;
    if (block >= SUMMARY_MMAP_MIN) {
        base = mmap(NULL, block, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED)
            base = NULL;
    } else {
        base = malloc(block);
    }
    if (base == NULL)
        return NULL;
    memcpy(base, &block, sizeof block);
    char *text = base + SUMMARY_HEADER;
    char *out = text;
    memcpy(out, head, (size_t)head_length);
    out += head_length;
    for (uint32_t n = state->oldest; n != NIL; n = state->slots[n].newer) {
        if (n != state->oldest)
            *out++ = ',';
        out = append_escaped(out, slot_name(state, &state->slots[n]), state->slots[n].name_length);
    }
    memcpy(out, "],\"perHost\":{", 13);
    out += 13;
    bool first = true;
    for (size_t h = 0; h < state->host_count; h++) {
        if (state->hosts[h].users == 0)
            continue;
        if (!first)
            *out++ = ',';
        first = false;
        out = append_escaped(out, state->hosts[h].name, strlen(state->hosts[h].name));
        out += snprintf(out, 23, ":%zu", state->hosts[h].users);
    }
    out += snprintf(out, (size_t)(text + total + 1 - out), "},\"at\":\"%s\"}", at);
    *length = (size_t)(out - text);
    return text;
}

void users_state_summary_free(char *summary)
{
    if (summary == NULL)
        return;
    char *base = summary - SUMMARY_HEADER;
    size_t block;
    memcpy(&block, base, sizeof block);
    if (block >= SUMMARY_MMAP_MIN)
        munmap(base, block);
    else
        free(base);
}

/* ---- reading a summary back ---- */

/*
 * A small JSON reader for users_state_load. cJSON would build a tree of
 * 100,000 nodes (about 11 MB, which then stays in the malloc arena) to read
 * a 2 MB summary; this reads the text twice instead (validate and find the
 * members, then take them) and allocates nothing. Strict JSON (RFC 8259);
 * nesting is limited to JSON_DEPTH_MAX.
 */
enum { JSON_DEPTH_MAX = 32 };

struct reader {
    const char *text;
    size_t length, at;
};

static void skip_space(struct reader *r)
{
    while (r->at < r->length && (r->text[r->at] == ' ' || r->text[r->at] == '\t' ||
                                 r->text[r->at] == '\n' || r->text[r->at] == '\r'))
        r->at++;
}

static bool take(struct reader *r, char c)
{
    skip_space(r);
    if (r->at < r->length && r->text[r->at] == c) {
        r->at++;
        return true;
    }
    return false;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool read_hex4(struct reader *r, unsigned *value)
{
    if (r->length - r->at < 4)
        return false;
    *value = 0;
    for (int k = 0; k < 4; k++) {
        int digit = hex_value(r->text[r->at++]);
        if (digit < 0)
            return false;
        *value = *value * 16 + (unsigned)digit;
    }
    return true;
}

/* Append code point `cp` as UTF-8 when it fits in out[*used .. size-1). */
static void put_utf8(char *out, size_t size, size_t *used, bool *cut, unsigned cp)
{
    char bytes[4];
    size_t n;
    if (cp < 0x80) {
        bytes[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        bytes[0] = (char)(0xC0 | (cp >> 6));
        bytes[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        bytes[0] = (char)(0xE0 | (cp >> 12));
        bytes[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        bytes[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        bytes[0] = (char)(0xF0 | (cp >> 18));
        bytes[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        bytes[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        bytes[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if (*cut || *used + n >= size) {
        *cut = true;
        return;
    }
    memcpy(out + *used, bytes, n);
    *used += n;
}

/*
 * A string at r->at (after skipping blanks). With `out` (size bytes), its
 * decoded text, NUL-terminated; *cut when it did not fit. False for invalid
 * JSON (a raw control character, a bad escape, a lone surrogate).
 */
static bool read_string(struct reader *r, char *out, size_t size, size_t *length, bool *cut)
{
    size_t used = 0;
    bool dummy_cut = false;
    bool *too_long = cut ? cut : &dummy_cut;
    *too_long = false;
    if (!take(r, '"'))
        return false;
    while (r->at < r->length) {
        unsigned char c = (unsigned char)r->text[r->at++];
        if (c == '"') {
            if (out)
                out[used] = '\0';
            if (length)
                *length = used;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c != '\\') {
            if (out) {
                if (*too_long || used + 1 >= size)
                    *too_long = true;
                else
                    out[used++] = (char)c;
            }
            continue;
        }
        if (r->at >= r->length)
            return false;
        char e = r->text[r->at++];
        unsigned cp;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            cp = (unsigned char)e;
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            if (!read_hex4(r, &cp))
                return false;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return false; /* a low surrogate first */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned low;
                if (r->length - r->at < 2 || r->text[r->at] != '\\' || r->text[r->at + 1] != 'u')
                    return false;
                r->at += 2;
                if (!read_hex4(r, &low) || low < 0xDC00 || low > 0xDFFF)
                    return false;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            break;
        default:
            return false;
        }
        if (out)
            put_utf8(out, size, &used, too_long, cp);
    }
    return false;
}

/* A number; with `value`, its integer part when it is a plain non-negative integer. */
static bool read_number(struct reader *r, long long *value, bool *integer)
{
    skip_space(r);
    size_t start = r->at;
    if (r->at < r->length && r->text[r->at] == '-')
        r->at++;
    size_t digits = r->at;
    while (r->at < r->length && r->text[r->at] >= '0' && r->text[r->at] <= '9')
        r->at++;
    if (r->at == digits || (r->text[digits] == '0' && r->at - digits > 1))
        return false;
    bool plain = r->text[start] != '-' && r->at - digits <= 12;
    if (r->at < r->length && r->text[r->at] == '.') {
        plain = false;
        size_t fraction = ++r->at;
        while (r->at < r->length && r->text[r->at] >= '0' && r->text[r->at] <= '9')
            r->at++;
        if (r->at == fraction)
            return false;
    }
    if (r->at < r->length && (r->text[r->at] == 'e' || r->text[r->at] == 'E')) {
        plain = false;
        r->at++;
        if (r->at < r->length && (r->text[r->at] == '+' || r->text[r->at] == '-'))
            r->at++;
        size_t exponent = r->at;
        while (r->at < r->length && r->text[r->at] >= '0' && r->text[r->at] <= '9')
            r->at++;
        if (r->at == exponent)
            return false;
    }
    if (integer)
        *integer = plain;
    if (value && plain) {
        *value = 0;
        for (size_t i = digits; i < r->at; i++)
            *value = *value * 10 + (r->text[i] - '0');
    }
    return true;
}

static bool skip_value(struct reader *r, int depth);

static bool skip_literal(struct reader *r, const char *word)
{
    size_t n = strlen(word);
    if (r->length - r->at < n || memcmp(r->text + r->at, word, n) != 0)
        return false;
    r->at += n;
    return true;
}

/* Any value, checked and passed over. */
static bool skip_value(struct reader *r, int depth)
{
    if (depth > JSON_DEPTH_MAX)
        return false;
    skip_space(r);
    if (r->at >= r->length)
        return false;
    char c = r->text[r->at];
    if (c == '"')
        return read_string(r, NULL, 0, NULL, NULL);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        r->at++;
        if (take(r, close))
            return true;
        do {
            if (c == '{' && (!read_string(r, NULL, 0, NULL, NULL) || !take(r, ':')))
                return false;
            if (!skip_value(r, depth + 1))
                return false;
        } while (take(r, ','));
        return take(r, close);
    }
    if (c == 't')
        return skip_literal(r, "true");
    if (c == 'f')
        return skip_literal(r, "false");
    if (c == 'n')
        return skip_literal(r, "null");
    return read_number(r, NULL, NULL);
}

/*
 * Pass 1: the whole text is one JSON object; remember where the values of
 * its "users" and "perHost" members start (0 = absent).
 */
static bool find_members(struct reader *r, size_t *users_at, size_t *per_host_at)
{
    char name[16];
    bool cut;
    *users_at = *per_host_at = 0;
    if (!take(r, '{'))
        return false;
    if (!take(r, '}')) {
        do {
            if (!read_string(r, name, sizeof name, NULL, &cut) || !take(r, ':'))
                return false;
            skip_space(r);
            if (!cut && strcmp(name, "users") == 0)
                *users_at = r->at;
            else if (!cut && strcmp(name, "perHost") == 0)
                *per_host_at = r->at;
            if (!skip_value(r, 1))
                return false;
        } while (take(r, ','));
        if (!take(r, '}'))
            return false;
    }
    skip_space(r);
    return r->at == r->length;
}

/* One host of "perHost" still to be handed out. */
struct host_share {
    uint16_t host;
    long long left;
};

enum butler_status users_state_load(struct users_state *state, const char *json, size_t length,
                                    uint64_t now_ms, size_t *added)
{
    struct host_share shares[USERS_HOSTS_MAX];
    size_t share_count = 0, share = 0;
    size_t users_at, per_host_at;
    char name[USERS_NAME_MAX];
    size_t name_length;
    bool cut;
    *added = 0;
    struct reader r = {json, length, 0};
    if (!find_members(&r, &users_at, &per_host_at) || users_at == 0 || json[users_at] != '[' ||
        (per_host_at != 0 && json[per_host_at] != '{'))
        return BUTLER_ERR_INVALID;
    /* Pass 2 (the text is known to be valid JSON): hosts first, then users. */
    if (per_host_at) {
        r.at = per_host_at + 1;
        if (!take(&r, '}')) {
            do {
                long long count = 0;
                bool integer = false;
                if (!read_string(&r, name, sizeof name, NULL, &cut) || !take(&r, ':'))
                    return BUTLER_ERR_INVALID;
                skip_space(&r);
                if (r.text[r.at] == '-' || (r.text[r.at] >= '0' && r.text[r.at] <= '9')) {
                    if (!read_number(&r, &count, &integer))
                        return BUTLER_ERR_INVALID;
                } else if (!skip_value(&r, 2)) {
                    return BUTLER_ERR_INVALID;
                }
                if (!cut && integer && count > 0 && share_count < USERS_HOSTS_MAX)
                    shares[share_count++] = (struct host_share){host_number(state, name), count};
            } while (take(&r, ','));
        }
    }
    r.at = users_at + 1;
    if (take(&r, ']'))
        return BUTLER_OK;
    do {
        skip_space(&r);
        if (r.text[r.at] != '"') {
            if (!skip_value(&r, 2)) /* not a name: passed over */
                return BUTLER_ERR_INVALID;
            continue;
        }
        if (!read_string(&r, name, sizeof name, &name_length, &cut))
            return BUTLER_ERR_INVALID;
        while (share < share_count && shares[share].left < 1)
            share++;
        uint16_t host = HOST_NONE;
        if (share < share_count) {
            host = shares[share].host;
            shares[share].left--;
        }
        if (state->count >= state->max_users)
            break;
        if (cut || name_length == 0 || memchr(name, '\0', name_length) != NULL)
            continue;
        if (state->index[index_find(state, name, name_length)] != NIL)
            continue; /* already active: the live event wins */
        struct users_change change = {0};
        enum butler_status status = upsert(state, name, name_length, host, now_ms, &change);
        if (status != BUTLER_OK)
            return status;
        (*added)++;
    } while (take(&r, ','));
    return BUTLER_OK;
}
