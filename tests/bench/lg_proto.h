/*
 * lg_proto.h - the load generator's wire codecs, with no I/O so they can be
 * unit tested: the NATS client protocol (text control lines), MQTT 3.1.1
 * packets, a stream buffer that carries a message split across WebSocket
 * frames over to the next frame, the benchmark payload, and the few JSON
 * look-ups the latchkey.v1 messages need.
 *
 * Parsers work in place: a parsed message points into the caller's bytes
 * and is valid until those bytes change. Nothing on the receive path
 * allocates, except an lg_stream keeping an incomplete tail.
 *
 * Ownership: an lg_stream owns its buffer; release it with lg_stream_free.
 * Everything else writes into caller buffers.
 *
 * Thread safety: every function is reentrant; a stream belongs to one
 * connection and one thread.
 */
#ifndef LG_PROTO_H
#define LG_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* ---- NATS ---- */

#define LG_NATS_MAX_LINE 65536 /* longest control line accepted (INFO can be long) */

enum {
    LG_NATS_MSG = 1, /* MSG or HMSG: subject, sid, payload (headers skipped) */
    LG_NATS_PING,
    LG_NATS_PONG,
    LG_NATS_INFO, /* text: the JSON argument */
    LG_NATS_OK,
    LG_NATS_ERR   /* text: the error, e.g. 'Slow Consumer' with its quotes */
};

typedef struct lg_nats_msg {
    int type;
    const char *subject;
    size_t subject_len;
    uint64_t sid;
    const uint8_t *payload; /* MSG payload, or the INFO/-ERR argument */
    size_t payload_len;
} lg_nats_msg;

/* Parses the protocol message at the start of `buf`. Returns the bytes it
 * spans (> 0), 0 if it is not complete yet, or -1 on bad input (unknown
 * operation, malformed arguments, a line over LG_NATS_MAX_LINE, a payload
 * over `max_payload` or not followed by CRLF). */
long lg_nats_parse(const uint8_t *buf, size_t len, size_t max_payload, lg_nats_msg *m);

/* ---- MQTT 3.1.1 ---- */

#define LG_MQTT_MAX_HEADER 5 /* fixed header: type byte + 4-byte remaining length */

enum {
    LG_MQTT_CONNECT = 1,
    LG_MQTT_CONNACK = 2,
    LG_MQTT_PUBLISH = 3,
    LG_MQTT_PUBACK = 4,
    LG_MQTT_SUBSCRIBE = 8,
    LG_MQTT_SUBACK = 9,
    LG_MQTT_PINGREQ = 12,
    LG_MQTT_PINGRESP = 13,
    LG_MQTT_DISCONNECT = 14
};

typedef struct lg_mqtt_pkt {
    int type;  /* high nibble of the first byte */
    int flags; /* low nibble */
    const uint8_t *body; /* variable header and payload */
    size_t body_len;
    /* PUBLISH only. */
    int qos;
    const uint8_t *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
} lg_mqtt_pkt;

/* Parses the packet at the start of `buf`. Returns the bytes it spans
 * (> 0), 0 if incomplete, or -1 on bad input (reserved type, remaining
 * length over 4 bytes or over `max_packet`, malformed PUBLISH, CONNACK,
 * SUBACK or PINGRESP). */
long lg_mqtt_parse(const uint8_t *buf, size_t len, size_t max_packet, lg_mqtt_pkt *p);

/* Encoders return the packet length, or 0 if `cap` is too small or an
 * argument is out of MQTT's bounds. */
size_t lg_mqtt_connect(uint8_t *out, size_t cap, const char *client_id, unsigned keepalive_s);
/* One SUBSCRIBE for `n` topic filters, each at QoS 0. */
size_t lg_mqtt_subscribe(uint8_t *out, size_t cap, unsigned packet_id, const char *const *topics,
                         int n);
/* A QoS 0 PUBLISH. */
size_t lg_mqtt_publish(uint8_t *out, size_t cap, const char *topic, size_t topic_len,
                       const void *payload, size_t len);
size_t lg_mqtt_pingreq(uint8_t *out, size_t cap);

/* ---- stream buffer ---- */

/* The tail of a message that a frame ended in the middle of. */
typedef struct lg_stream {
    uint8_t *buf;
    size_t len, cap;
} lg_stream;

void lg_stream_free(lg_stream *s);

typedef int (*lg_nats_cb)(void *ud, const lg_nats_msg *m);
typedef int (*lg_mqtt_cb)(void *ud, const lg_mqtt_pkt *p);

/* Feeds the next `len` bytes of the stream: every complete message, the
 * kept tail first, goes to `cb` (return nonzero to stop: the rest is
 * dropped); an incomplete one is kept for the next call. Returns 0, 1 if
 * the callback stopped, or -1 on bad input or out of memory. The stream
 * keeps at most max_payload + LG_NATS_MAX_LINE (NATS) or `max_packet`
 * (MQTT) bytes. */
int lg_nats_feed(lg_stream *s, const uint8_t *p, size_t len, size_t max_payload, lg_nats_cb cb,
                 void *ud);
int lg_mqtt_feed(lg_stream *s, const uint8_t *p, size_t len, size_t max_packet, lg_mqtt_cb cb,
                 void *ud);

/* ---- names ---- */

enum lg_proto { LG_PROTO_LATCHKEY, LG_PROTO_NATS, LG_PROTO_MQTT, LG_PROTO_RAW };

/* "latchkey", "nats", "mqtt", "raw" */
const char *lg_proto_name(int proto);
/* The protocol named `s`, or -1. */
int lg_proto_parse(const char *s);

/* Maps a Latchkey channel name to the protocol's: NATS subjects use '.'
 * and MQTT topics '/' where Latchkey uses ':'. Returns the length, or 0 if
 * it does not fit in `cap` (with the NUL). */
size_t lg_proto_map_channel(int proto, const char *name, char *out, size_t cap);

/* ---- payload ---- */

typedef struct lg_payload {
    uint64_t t;  /* intended send time, CLOCK_MONOTONIC ns */
    uint64_t n;  /* sequence per publisher (and channel) */
    uint64_t id; /* publisher id */
} lg_payload;

/* Writes {"t":<t>,"n":<n>,"i":<id>,"p":"xx..."} padded to exactly `size`
 * bytes (no NUL). Returns `size`, or 0 if it cannot fit. */
size_t lg_payload_make(char *out, size_t size, int64_t t, uint32_t n, int id);
/* Reads t, n and i from a payload: the publisher's own layout first, else
 * the members in any order and spacing. 0, or -1 if one is missing. */
int lg_payload_parse(const char *p, size_t len, lg_payload *out);

/* ---- JSON look-ups (flat objects, no unescaping) ---- */

/* The start of the value of member `qkey` (the key with its quotes) in
 * [p, p+len), past the colon and any whitespace; NULL if absent. A plain
 * search, not a parser: good for the flat messages read here. */
const char *lg_json_member(const char *p, size_t len, const char *qkey, size_t klen);
/* A string member's value, without unescaping. 0 or -1. */
int lg_json_str(const char *p, size_t len, const char *qkey, size_t klen, const char **v,
                size_t *vlen);
/* An unsigned integer member. 0 or -1. */
int lg_json_uint(const char *p, size_t len, const char *qkey, size_t klen, uint64_t *out);

#endif
