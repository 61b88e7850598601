/* A reference JSON-RPC server for robustd-bench services: libuv on a Unix socket, newline-
 * delimited, answering every line with a canned reply and the request's id copied over,
 * without parsing the JSON. It is the floor of what a libuv server can do for a round trip,
 * so that robustd's per-request costs are measured against it side by side.
 *
 *   uv-reference-server SOCKET_PATH REPLY_SUFFIX
 *
 * Each reply is {"jsonrpc":"2.0","id":<the id>REPLY_SUFFIX followed by a newline, where
 * REPLY_SUFFIX is, for example, ,"result":{}} . Built by robustd-bench with cc -O2 -luv.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
    uv_pipe_t pipe;
    char *line;
    size_t len, cap;
} client_t;

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} write_req_t;

static const char *suffix;
static size_t suffix_len;
static uv_pipe_t server;

static void on_close(uv_handle_t *h) {
    client_t *c = (client_t *)h;
    free(c->line);
    free(c);
}

static void on_write(uv_write_t *req, int status) {
    write_req_t *w = (write_req_t *)req;
    (void)status;
    free(w->buf.base);
    free(w);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    buf->base = malloc(suggested);
    buf->len = suggested;
}

static void reply(client_t *c, const char *line, size_t n) {
    static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":";
    const char *id = "null";
    size_t id_len = 4;
    const char *p = memmem(line, n, "\"id\":", 5);
    if (p) {
        p += 5;
        const char *end = p;
        if (*end == '"') {
            end++;
            while (end < line + n && *end != '"') end++;
            end++;
        } else {
            while (end < line + n && *end != ',' && *end != '}') end++;
        }
        id = p;
        id_len = (size_t)(end - p);
    }
    size_t total = sizeof(head) - 1 + id_len + suffix_len + 1;
    char *out = malloc(total);
    memcpy(out, head, sizeof(head) - 1);
    memcpy(out + sizeof(head) - 1, id, id_len);
    memcpy(out + sizeof(head) - 1 + id_len, suffix, suffix_len);
    out[total - 1] = '\n';
    uv_buf_t buf = uv_buf_init(out, (unsigned)total);
    int r = uv_try_write((uv_stream_t *)&c->pipe, &buf, 1);
    if (r == (int)total) { free(out); return; }
    size_t done = r > 0 ? (size_t)r : 0;
    write_req_t *w = malloc(sizeof(*w));
    w->buf = uv_buf_init(malloc(total - done), (unsigned)(total - done));
    memcpy(w->buf.base, out + done, total - done);
    free(out);
    uv_write(&w->req, (uv_stream_t *)&c->pipe, &w->buf, 1, on_write);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    client_t *c = (client_t *)s;
    if (nread < 0) {
        uv_close((uv_handle_t *)s, on_close);
        free(buf->base);
        return;
    }
    for (ssize_t i = 0; i < nread; i++) {
        char ch = buf->base[i];
        if (ch == '\n') {
            reply(c, c->line, c->len);
            c->len = 0;
        } else {
            if (c->len == c->cap) {
                c->cap = c->cap ? 2 * c->cap : 256;
                c->line = realloc(c->line, c->cap);
            }
            c->line[c->len++] = ch;
        }
    }
    free(buf->base);
}

static void on_connection(uv_stream_t *srv, int status) {
    if (status < 0) return;
    client_t *c = calloc(1, sizeof(*c));
    uv_pipe_init(uv_default_loop(), &c->pipe, 0);
    if (uv_accept(srv, (uv_stream_t *)&c->pipe) == 0) {
        uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, on_read);
    } else {
        uv_close((uv_handle_t *)&c->pipe, on_close);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOCKET_PATH REPLY_SUFFIX\n", argv[0]);
        return 2;
    }
    suffix = argv[2];
    suffix_len = strlen(suffix);
    unlink(argv[1]);
    uv_pipe_init(uv_default_loop(), &server, 0);
    int r = uv_pipe_bind(&server, argv[1]);
    if (r == 0) r = uv_listen((uv_stream_t *)&server, 511, on_connection);
    if (r != 0) {
        fprintf(stderr, "listen: %s\n", uv_strerror(r));
        return 1;
    }
    return uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}
