/* tls.c - TLS in front of the plaintext connection path: lws raw TLS
 * sockets on their own vhost, bridged through socketpairs. */
#include "tls.h"
#include "prelude.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define PEM_FILE_MAX (1 << 20)
#define QUEUE_MAX (1 << 20)          /* bytes waiting in one direction */
#define FLUSH_GRACE_SECS 5           /* to send what is queued after the far side closed */
/* TLS 1.2 suites (1.3 uses OpenSSL's defaults): forward secrecy and AEAD
 * only, as in Mozilla's "intermediate" profile. */
#define TLS12_CIPHERS "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
                      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
                      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

enum { P_OUTER = 0, P_PIPE, P_COUNT };

struct lk_tls {
    struct lws_vhost *vh;
    struct lws_protocols protocols[P_COUNT + 1];
    SSL_CTX *ctx;                    /* the vhost's; lws owns it */
    char why[256];                   /* a start-up failure inside lws */
    unsigned char *buf;              /* LWS_PRE + copy of one pipe read */
    size_t buf_cap;
};

/* One TLS connection: `outer` carries TLS to the client, `pipe` is our
 * end of the socketpair whose other end the prelude adopted. Each side
 * holds a reference; the link is freed when both wsis are gone. */
typedef struct tls_link {
    struct lws *outer, *pipe;
    int outer_closed, pipe_closed;
    int refs;
    unsigned char *to_pipe;          /* plaintext from the client not yet sent on */
    size_t to_pipe_len;
    unsigned char *to_outer;         /* plaintext for the client not yet encrypted */
    size_t to_outer_len;
} tls_link;

/* ------------------------------------------------------------ certificates */

typedef struct cert_pair {
    X509 *leaf;
    STACK_OF(X509) *chain;
    EVP_PKEY *pkey;
} cert_pair;

static void pair_free(cert_pair *p)
{
    X509_free(p->leaf);
    sk_X509_pop_free(p->chain, X509_free);
    EVP_PKEY_free(p->pkey);
    memset(p, 0, sizeof *p);
}

static void ssl_reason(char *out, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(out, cap, "%s", r ? r : "unknown error");
    ERR_clear_error();
}

/* Reads a whole PEM file, bounded; the caller wipes and frees it. */
static char *read_pem(const char *path, size_t *len, char *why, size_t why_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        st.st_size > PEM_FILE_MAX) {
        snprintf(why, why_len, "%s: not a regular file of 1 byte to 1 MiB", path);
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n);
    while (buf && got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            OPENSSL_cleanse(buf, n);
            free(buf);
            buf = NULL;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (!buf)
        snprintf(why, why_len, "%s: cannot read", path);
    *len = got;
    return buf;
}

/* Never prompt for a passphrase (the broker runs unattended). */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

static int load_pair(const char *cert_path, const char *key_path, cert_pair *p,
                     char *why, size_t why_len)
{
    char reason[160];
    size_t clen = 0, klen = 0;
    memset(p, 0, sizeof *p);
    char *cert = read_pem(cert_path, &clen, why, why_len);
    if (!cert)
        return -1;
    BIO *bio = BIO_new_mem_buf(cert, (int)clen);
    p->chain = sk_X509_new_null();
    if (bio && p->chain)
        p->leaf = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
    while (p->leaf) {
        X509 *x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
        if (!x)
            break;
        if (!sk_X509_push(p->chain, x)) {
            X509_free(x);
            break;
        }
    }
    ERR_clear_error();   /* the end of the chain reads as an error */
    BIO_free(bio);
    OPENSSL_cleanse(cert, clen);
    free(cert);
    if (!p->leaf) {
        snprintf(why, why_len, "%s: no PEM certificate", cert_path);
        pair_free(p);
        return -1;
    }

    char *key = read_pem(key_path, &klen, why, why_len);
    if (!key) {
        pair_free(p);
        return -1;
    }
    bio = BIO_new_mem_buf(key, (int)klen);
    if (bio)
        p->pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    OPENSSL_cleanse(key, klen);
    free(key);
    if (!p->pkey) {
        ssl_reason(reason, sizeof reason);
        snprintf(why, why_len, "%s: no usable PEM private key (%s; encrypted keys "
                 "are not supported)", key_path, reason);
        pair_free(p);
        return -1;
    }
    if (X509_check_private_key(p->leaf, p->pkey) != 1) {
        ERR_clear_error();
        snprintf(why, why_len, "%s does not match the certificate in %s", key_path,
                 cert_path);
        pair_free(p);
        return -1;
    }
    return 0;
}

static int apply_pair(SSL_CTX *ctx, const cert_pair *p, char *why, size_t why_len)
{
    int ok = SSL_CTX_use_certificate(ctx, p->leaf) == 1 &&
             SSL_CTX_clear_chain_certs(ctx) == 1;
    for (int i = 0; ok && i < sk_X509_num(p->chain); i++)
        ok = SSL_CTX_add1_chain_cert(ctx, sk_X509_value(p->chain, i)) == 1;
    ok = ok && SSL_CTX_use_PrivateKey(ctx, p->pkey) == 1 &&
         SSL_CTX_check_private_key(ctx) == 1;
    if (!ok) {
        char reason[160];
        ssl_reason(reason, sizeof reason);
        snprintf(why, why_len, "the TLS library refused the certificate: %s", reason);
        return -1;
    }
    return 0;
}

static void log_cert(lk_broker *b, const char *msg, const cert_pair *p)
{
    lk_logline l;
    if (!lk_log_begin(&l, b->log, LK_LOG_INFO, msg))
        return;
    char subject[256], not_after[64] = "";
    X509_NAME_oneline(X509_get_subject_name(p->leaf), subject, sizeof subject);
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem && ASN1_TIME_print(mem, X509_get0_notAfter(p->leaf)) == 1) {
        int n = BIO_read(mem, not_after, sizeof not_after - 1);
        not_after[n > 0 ? n : 0] = '\0';
    }
    BIO_free(mem);
    lk_log_str(&l, "subject", subject);
    lk_log_str(&l, "not_after", not_after);
    lk_log_int(&l, "chain", sk_X509_num(p->chain));
    if (X509_cmp_current_time(X509_get0_notAfter(p->leaf)) < 0)
        lk_log_str(&l, "warning", "the certificate has expired");
    lk_log_end(&l);
}

/* Loads b->cfg's pair into ctx; logs what was loaded. */
static int load_into(lk_broker *b, SSL_CTX *ctx, const char *msg, char *why, size_t why_len)
{
    cert_pair p;
    if (load_pair(b->cfg->tls_cert, b->cfg->tls_key, &p, why, why_len))
        return -1;
    int rc = apply_pair(ctx, &p, why, why_len);
    if (!rc)
        log_cert(b, msg, &p);
    pair_free(&p);
    return rc;
}

/* lws created the vhost's SSL_CTX without certificates
 * (LWS_SERVER_OPTION_CREATE_VHOST_SSL_CTX): set the floor and load ours. */
static int setup_ctx(lk_broker *b, SSL_CTX *ctx)
{
    lk_tls *t = b->tls;
    if (!t || !ctx) {
        if (t)
            snprintf(t->why, sizeof t->why, "lws created no TLS context");
        return 1;
    }
    t->ctx = ctx;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        snprintf(t->why, sizeof t->why, "cannot require TLS 1.2");
        return 1;
    }
    return load_into(b, ctx, "tls certificate loaded", t->why, sizeof t->why) ? 1 : 0;
}

/* ------------------------------------------------------------ bridging */

static int queue_bytes(unsigned char **q, size_t *qlen, const void *data, size_t len)
{
    if (*qlen + len > QUEUE_MAX)
        return -1;
    unsigned char *n = realloc(*q, *qlen + len);
    if (!n)
        return -1;
    memcpy(n + *qlen, data, len);
    *q = n;
    *qlen += len;
    return 0;
}

static void queue_drop(unsigned char **q, size_t *qlen, size_t n)
{
    memmove(*q, *q + n, *qlen - n);
    *qlen -= n;
    if (!*qlen) {
        free(*q);
        *q = NULL;
    }
}

static void kill_async(struct lws *wsi)
{
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Sends queued client bytes into the socketpair: 0 when all went, 1 when
 * the socketpair is full, -1 on error. */
static int flush_to_pipe(tls_link *l)
{
    int fd = lws_get_socket_fd(l->pipe);
    while (l->to_pipe_len) {
        ssize_t n = send(fd, l->to_pipe, l->to_pipe_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        if (n <= 0)
            return -1;
        queue_drop(&l->to_pipe, &l->to_pipe_len, (size_t)n);
    }
    return 0;
}

/* Decrypted client bytes: on into the socketpair, or queued with the
 * client's reads paused until the plaintext side catches up. */
static int from_client(tls_link *l, const unsigned char *in, size_t len)
{
    if (l->pipe_closed || !l->pipe)
        return -1;
    if (!l->to_pipe_len) {
        ssize_t n;
        do
            n = send(lws_get_socket_fd(l->pipe), in, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (n > 0) {
            in += n;
            len -= (size_t)n;
        }
        if (!len)
            return 0;
    }
    if (queue_bytes(&l->to_pipe, &l->to_pipe_len, in, len))
        return -1;
    lws_rx_flow_control(l->outer, 0);
    lws_callback_on_writable(l->pipe);
    return 0;
}

static int pipe_writeable(tls_link *l)
{
    int rc = flush_to_pipe(l);
    if (rc < 0)
        return -1;
    if (rc > 0)
        lws_callback_on_writable(l->pipe);
    else if (l->outer && !l->outer_closed)
        lws_rx_flow_control(l->outer, 1);
    return 0;
}

/* One lws_write: lws keeps what the socket does not take
 * (lws_partial_buffered), and no other write may happen until that is
 * gone, so the broker's side pauses meanwhile. */
static int write_outer(lk_tls *t, tls_link *l, const unsigned char *data, size_t n)
{
    if (LWS_PRE + n > t->buf_cap) {
        unsigned char *nb = realloc(t->buf, LWS_PRE + n);
        if (!nb)
            return -1;
        t->buf = nb;
        t->buf_cap = LWS_PRE + n;
    }
    memcpy(t->buf + LWS_PRE, data, n);
    if (lws_write(l->outer, t->buf + LWS_PRE, n, LWS_WRITE_RAW) < 0)
        return -1;
    if (lws_partial_buffered(l->outer)) {
        if (l->pipe && !l->pipe_closed)
            lws_rx_flow_control(l->pipe, 0);
        lws_callback_on_writable(l->outer);
    }
    return 0;
}

/* Plaintext from the broker for the client. */
static int from_inner(lk_tls *t, tls_link *l, const unsigned char *in, size_t len)
{
    if (l->outer_closed || !l->outer)
        return -1;
    if (l->to_outer_len || lws_partial_buffered(l->outer)) {
        if (queue_bytes(&l->to_outer, &l->to_outer_len, in, len))
            return -1;
        lws_rx_flow_control(l->pipe, 0);
        lws_callback_on_writable(l->outer);
        return 0;
    }
    if (write_outer(t, l, in, len)) {
        kill_async(l->outer);
        return -1;
    }
    return 0;
}

static int outer_writeable(lk_tls *t, tls_link *l)
{
    if (lws_partial_buffered(l->outer)) {
        lws_callback_on_writable(l->outer);
        return 0;
    }
    if (l->to_outer_len) {
        size_t n = l->to_outer_len;
        int rc = write_outer(t, l, l->to_outer, n);
        queue_drop(&l->to_outer, &l->to_outer_len, n);
        return rc;
    }
    if (l->pipe_closed)
        return -1;   /* all sent: follow the plaintext side */
    if (l->pipe)
        lws_rx_flow_control(l->pipe, 1);
    return 0;
}

static void pipe_gone(tls_link *l)
{
    l->pipe_closed = 1;
    if (!l->outer || l->outer_closed)
        return;
    if (l->to_outer_len || lws_partial_buffered(l->outer)) {
        lws_set_timeout(l->outer, PENDING_TIMEOUT_USER_OK, FLUSH_GRACE_SECS);
        lws_callback_on_writable(l->outer);
    } else {
        kill_async(l->outer);
    }
}

static void outer_gone(tls_link *l)
{
    l->outer_closed = 1;
    if (l->pipe && !l->pipe_closed)
        kill_async(l->pipe);
}

static void link_unref(tls_link *l)
{
    if (--l->refs)
        return;
    free(l->to_pipe);
    if (l->to_outer) {
        OPENSSL_cleanse(l->to_outer, l->to_outer_len);
        free(l->to_outer);
    }
    free(l);
}

static int tls_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                  void *in, size_t len)
{
    lk_broker *b = lws_context_user(lws_get_context(wsi));
    tls_link *l;
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
        return setup_ctx(b, user);
    case LWS_CALLBACK_WSI_DESTROY:
        l = lws_get_opaque_user_data(wsi);
        if (!l || (wsi != l->outer && wsi != l->pipe))
            return 0;
        if (wsi == l->outer) {
            outer_gone(l);
            l->outer = NULL;
        } else {
            pipe_gone(l);
            l->pipe = NULL;
        }
        link_unref(l);
        return 0;
    case LWS_CALLBACK_RAW_RX:
    case LWS_CALLBACK_RAW_WRITEABLE:
    case LWS_CALLBACK_RAW_CLOSE:
        break;
    default:
        return 0;
    }
    l = lws_get_opaque_user_data(wsi);
    if (!l || (wsi != l->outer && wsi != l->pipe))
        return reason == LWS_CALLBACK_RAW_CLOSE ? 0 : -1;
    int outer = wsi == l->outer;
    switch (reason) {
    case LWS_CALLBACK_RAW_RX:
        return outer ? from_client(l, in, len) : from_inner(b->tls, l, in, len);
    case LWS_CALLBACK_RAW_WRITEABLE:
        return outer ? outer_writeable(b->tls, l) : pipe_writeable(l);
    default:   /* RAW_CLOSE */
        if (outer)
            outer_gone(l);
        else
            pipe_gone(l);
        return 0;
    }
}

/* ------------------------------------------------------------ public */

unsigned long long lk_tls_context_options(const lk_broker *b)
{
    return b->cfg->tls_cert ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
}

int lk_tls_start(lk_broker *b, char *why, size_t why_len)
{
    if (!b->cfg->tls_cert)
        return 0;
    lk_tls *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    t->protocols[P_OUTER] = (struct lws_protocols){"lk-tls", tls_cb, 0, 0, P_OUTER, NULL, 0};
    t->protocols[P_PIPE] = (struct lws_protocols){"lk-tls-pipe", tls_cb, 0, 0, P_PIPE,
                                                  NULL, 0};
    b->tls = t;

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.vhost_name = "latchkey-tls";
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = t->protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                   LWS_SERVER_OPTION_CREATE_VHOST_SSL_CTX;
    /* What lies behind the bridge speaks HTTP/1.1 only; lws would offer h2. */
    info.alpn = "http/1.1";
    info.ssl_cipher_list = TLS12_CIPHERS;
    info.ssl_options_set = (long)(SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 |
                                  SSL_OP_NO_RENEGOTIATION);
    t->vh = lws_create_vhost(b->ctx, &info);
    if (!t->vh || !t->ctx) {
        snprintf(why, why_len, "TLS: %s", t->why[0] ? t->why : "cannot create the TLS vhost");
        b->tls = NULL;
        lk_tls_destroy(t);
        return -1;
    }
    return 0;
}

int lk_tls_reload(lk_broker *b, char *why, size_t why_len)
{
    lk_tls *t = b->tls;
    if (!t || !b->cfg->tls_cert)
        return 0;
    return load_into(b, t->ctx, "tls certificate reloaded", why, why_len);
}

int lk_tls_adopt(lk_broker *b, int fd)
{
    lk_tls *t = b->tls;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
        close(fd);
        return -1;
    }
    tls_link *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    l->refs = 1;   /* ours, until the end of this function */

    /* On failure lws closes the descriptor it was given. */
    lws_adopt_desc_t d;
    memset(&d, 0, sizeof d);
    d.vh = t->vh;
    d.type = LWS_ADOPT_SOCKET | LWS_ADOPT_ALLOW_SSL;
    d.fd.sockfd = fd;
    d.vh_prot_name = "lk-tls";
    d.opaque = l;
    l->outer = lws_adopt_descriptor_vhost_via_info(&d);
    if (l->outer)
        l->refs++;
    d.type = LWS_ADOPT_SOCKET;
    d.fd.sockfd = sv[1];
    d.vh_prot_name = "lk-tls-pipe";
    l->pipe = l->outer ? lws_adopt_descriptor_vhost_via_info(&d) : NULL;
    if (l->pipe)
        l->refs++;
    else if (!l->outer)
        close(sv[1]);

    int rc = -1;
    if (l->outer && l->pipe) {
        uint64_t seen = b->destroyed;
        struct lws *w = lk_prelude_adopt(b, sv[0]);
        /* A wsi that was made and then failed went through WSI_DESTROY,
         * which settled the socket count. */
        rc = w || b->destroyed != seen ? 0 : -1;
        if (!w) {
            kill_async(l->outer);
            kill_async(l->pipe);
        }
    } else {
        close(sv[0]);
        if (l->outer)
            kill_async(l->outer);
    }
    link_unref(l);
    return rc;
}

void lk_tls_destroy(lk_tls *t)
{
    if (!t)
        return;
    free(t->buf);
    free(t);
}
