/* json.c: a small strict JSON (RFC 8259) value tree, parser and encoder, for model-file
 * manifests and reports (see io.h). Strict because manifests come from strangers: anything a
 * lenient parser would guess at (trailing commas, NaN, duplicate keys, bad UTF-8) is refused
 * with its line and column. */
#include "io.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ values */

pr_json *pr_json_new(pr_json_type type)
{
    pr_json *v = calloc(1, sizeof *v);
    if (!v) {
        pr_error_code(PR_ENOMEM, "json: out of memory");
        return NULL;
    }
    v->type = type;
    if (type == PR_JSON_STRING) {
        v->str = calloc(1, 1);
        if (!v->str) {
            free(v);
            pr_error_code(PR_ENOMEM, "json: out of memory");
            return NULL;
        }
    }
    return v;
}

pr_json *pr_json_new_bool(int b)
{
    pr_json *v = pr_json_new(PR_JSON_BOOL);
    if (v)
        v->boolean = b != 0;
    return v;
}

pr_json *pr_json_new_integer(int64_t i)
{
    pr_json *v = pr_json_new(PR_JSON_INTEGER);
    if (v) {
        v->integer = i;
        v->number = (double)i;
    }
    return v;
}

pr_json *pr_json_new_number(double d)
{
    pr_json *v = pr_json_new(PR_JSON_NUMBER);
    if (v)
        v->number = d;
    return v;
}

pr_json *pr_json_new_string(const char *s, size_t len)
{
    pr_json *v = calloc(1, sizeof *v);
    char *copy = malloc(len + 1);
    if (!v || !copy) {
        free(v);
        free(copy);
        pr_error_code(PR_ENOMEM, "json: out of memory");
        return NULL;
    }
    if (len)
        memcpy(copy, s, len);
    copy[len] = '\0';
    v->type = PR_JSON_STRING;
    v->str = copy;
    v->len = len;
    return v;
}

void pr_json_free(pr_json *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->count; i++) {
        pr_json_free(v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_lens);
    free(v->str);
    free(v);
}

static int grow(pr_json *c)
{
    if (c->count < c->cap)
        return PR_OK;
    size_t cap = c->cap ? 2 * c->cap : 4;
    pr_json **items = realloc(c->items, cap * sizeof *items);
    if (!items)
        return pr_error_code(PR_ENOMEM, "json: out of memory");
    c->items = items;
    if (c->type == PR_JSON_OBJECT) {
        char **keys = realloc(c->keys, cap * sizeof *keys);
        if (!keys)
            return pr_error_code(PR_ENOMEM, "json: out of memory");
        c->keys = keys;
        size_t *lens = realloc(c->key_lens, cap * sizeof *lens);
        if (!lens)
            return pr_error_code(PR_ENOMEM, "json: out of memory");
        c->key_lens = lens;
    }
    c->cap = cap;
    return PR_OK;
}

int pr_json_array_push(pr_json *arr, pr_json *item)
{
    if (!item)
        return PR_ENOMEM;
    if (arr->type != PR_JSON_ARRAY) {
        pr_json_free(item);
        return pr_error("json: push onto a non-array");
    }
    if (grow(arr) < 0) {
        pr_json_free(item);
        return PR_ENOMEM;
    }
    arr->items[arr->count++] = item;
    return PR_OK;
}

static long find_key(const pr_json *obj, const char *key, size_t len)
{
    for (size_t i = 0; i < obj->count; i++)
        if (obj->key_lens[i] == len && memcmp(obj->keys[i], key, len) == 0)
            return (long)i;
    return -1;
}

int pr_json_object_set(pr_json *obj, const char *key, size_t key_len, pr_json *value)
{
    if (!value)
        return PR_ENOMEM;
    if (obj->type != PR_JSON_OBJECT) {
        pr_json_free(value);
        return pr_error("json: set on a non-object");
    }
    if (find_key(obj, key, key_len) >= 0) {
        pr_json_free(value);
        return pr_error("json: duplicate key \"%.*s\"", (int)(key_len > 100 ? 100 : key_len), key);
    }
    char *k = malloc(key_len + 1);
    if (!k || grow(obj) < 0) {
        free(k);
        pr_json_free(value);
        return pr_error_code(PR_ENOMEM, "json: out of memory");
    }
    memcpy(k, key, key_len);
    k[key_len] = '\0';
    obj->keys[obj->count] = k;
    obj->key_lens[obj->count] = key_len;
    obj->items[obj->count++] = value;
    return PR_OK;
}

pr_json *pr_json_object_get(const pr_json *obj, const char *key)
{
    if (!obj || obj->type != PR_JSON_OBJECT)
        return NULL;
    long i = find_key(obj, key, strlen(key));
    return i < 0 ? NULL : obj->items[i];
}

void pr_json_object_sort(pr_json *obj)
{
    if (obj->type != PR_JSON_OBJECT)
        return;
    /* Insertion sort: objects are small and this keeps equal keys' order (there are none). */
    for (size_t i = 1; i < obj->count; i++) {
        char *k = obj->keys[i];
        size_t kl = obj->key_lens[i];
        pr_json *v = obj->items[i];
        size_t j = i;
        while (j > 0) {
            size_t pl = obj->key_lens[j - 1];
            int c = memcmp(obj->keys[j - 1], k, pl < kl ? pl : kl);
            if (c < 0 || (c == 0 && pl <= kl))
                break;
            obj->keys[j] = obj->keys[j - 1];
            obj->key_lens[j] = pl;
            obj->items[j] = obj->items[j - 1];
            j--;
        }
        obj->keys[j] = k;
        obj->key_lens[j] = kl;
        obj->items[j] = v;
    }
}

/* ------------------------------------------------------------------ parser */

typedef struct parser {
    const char *s;
    size_t len, pos;
    const char *what;
    int depth;
} parser;

static PR_PRINTF(2, 3) int parse_fail(parser *p, const char *fmt, ...)
{
    size_t line = 1, col = 1;
    for (size_t i = 0; i < p->pos && i < p->len; i++) {
        if (p->s[i] == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)p->s[i] & 0xC0) != 0x80) {
            col++;
        }
    }
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pr_error_code(PR_EFORMAT, "%s: JSON error at line %zu, column %zu (byte %zu): %s",
                         p->what, line, col, p->pos, msg);
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0. */
static int utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    int len;
    uint32_t cp;
    if ((s[0] & 0xE0) == 0xC0) { len = 2; cp = s[0] & 0x1F; }
    else if ((s[0] & 0xF0) == 0xE0) { len = 3; cp = s[0] & 0x0F; }
    else if ((s[0] & 0xF8) == 0xF0) { len = 4; cp = s[0] & 0x07; }
    else return 0;
    if ((size_t)len > n)
        return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hex4(parser *p, uint32_t *out)
{
    if (p->len - p->pos < 4)
        return parse_fail(p, "\\u needs four hex digits");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos + i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
                c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return parse_fail(p, "\\u needs four hex digits");
        v = v << 4 | (uint32_t)d;
    }
    p->pos += 4;
    *out = v;
    return PR_OK;
}

/* Parses a string at p->pos (on the opening quote) into a malloc'd buffer. */
static int parse_string(parser *p, char **out, size_t *out_len)
{
    p->pos++;
    /* Decoded text is never longer than the source. */
    size_t start = p->pos, end = start;
    while (end < p->len && p->s[end] != '"')
        end += p->s[end] == '\\' ? 2 : 1;
    char *buf = malloc(end - start + 1);
    if (!buf)
        return pr_error_code(PR_ENOMEM, "json: out of memory");
    size_t n = 0;
    for (;;) {
        if (p->pos >= p->len) {
            free(buf);
            return parse_fail(p, "unterminated string");
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            free(buf);
            return parse_fail(p, "control character 0x%02x in a string (escape it)", c);
        }
        if (c != '\\') {
            int l = utf8_len((const unsigned char *)p->s + p->pos, p->len - p->pos);
            if (!l) {
                free(buf);
                return parse_fail(p, "invalid UTF-8");
            }
            memcpy(buf + n, p->s + p->pos, (size_t)l);
            n += (size_t)l;
            p->pos += (size_t)l;
            continue;
        }
        p->pos++;
        char e = p->pos < p->len ? p->s[p->pos] : '\0';
        p->pos++;
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (hex4(p, &cp) < 0) {
                free(buf);
                return PR_EFORMAT;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                free(buf);
                p->pos -= 6;
                return parse_fail(p, "lone low surrogate \\u%04X", (unsigned)cp);
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    free(buf);
                    return parse_fail(p, "high surrogate not followed by a low one");
                }
                p->pos += 2;
                if (hex4(p, &lo) < 0) {
                    free(buf);
                    return PR_EFORMAT;
                }
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    free(buf);
                    return parse_fail(p, "high surrogate not followed by a low one");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            n += put_utf8(buf + n, cp);
            break;
        }
        default:
            free(buf);
            p->pos--;
            return parse_fail(p, "invalid escape");
        }
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return PR_OK;
}

static pr_json *parse_value(parser *p);

static pr_json *parse_number(parser *p)
{
    size_t start = p->pos;
    const char *s = p->s;
    int is_int = 1;
    if (p->pos < p->len && s[p->pos] == '-')
        p->pos++;
    if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') {
        parse_fail(p, "expected a digit");
        return NULL;
    }
    if (s[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') {
            parse_fail(p, "leading zeros are not allowed");
            return NULL;
        }
    } else {
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9')
            p->pos++;
    }
    if (p->pos < p->len && s[p->pos] == '.') {
        is_int = 0;
        p->pos++;
        if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') {
            parse_fail(p, "expected a digit after '.'");
            return NULL;
        }
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9')
            p->pos++;
    }
    if (p->pos < p->len && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        is_int = 0;
        p->pos++;
        if (p->pos < p->len && (s[p->pos] == '+' || s[p->pos] == '-'))
            p->pos++;
        if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') {
            parse_fail(p, "expected a digit in the exponent");
            return NULL;
        }
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9')
            p->pos++;
    }
    /* The text is not NUL-terminated where it ends; copy it for strtod/strtoll. */
    char tmp[64];
    size_t n = p->pos - start;
    if (n >= sizeof tmp) {
        if (is_int) {
            p->pos = start;
            parse_fail(p, "integer too long");
            return NULL;
        }
        char *big = malloc(n + 1);
        if (!big) {
            pr_error_code(PR_ENOMEM, "json: out of memory");
            return NULL;
        }
        memcpy(big, s + start, n);
        big[n] = '\0';
        double d = strtod(big, NULL);
        free(big);
        if (!isfinite(d)) {
            p->pos = start;
            parse_fail(p, "number out of range");
            return NULL;
        }
        return pr_json_new_number(d);
    }
    memcpy(tmp, s + start, n);
    tmp[n] = '\0';
    if (is_int) {
        errno = 0;
        long long v = strtoll(tmp, NULL, 10);
        if (errno == 0)
            return pr_json_new_integer(v);
    }
    double d = strtod(tmp, NULL);
    if (!isfinite(d)) {
        p->pos = start;
        parse_fail(p, "number out of range");
        return NULL;
    }
    return pr_json_new_number(d);
}

static int match_word(parser *p, const char *w)
{
    size_t n = strlen(w);
    if (p->len - p->pos >= n && memcmp(p->s + p->pos, w, n) == 0) {
        p->pos += n;
        return 1;
    }
    return 0;
}

static pr_json *parse_container(parser *p, int is_obj)
{
    if (++p->depth > PR_JSON_MAX_DEPTH) {
        parse_fail(p, "nested deeper than %d", PR_JSON_MAX_DEPTH);
        return NULL;
    }
    char close = is_obj ? '}' : ']';
    p->pos++;
    pr_json *c = pr_json_new(is_obj ? PR_JSON_OBJECT : PR_JSON_ARRAY);
    if (!c)
        return NULL;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return c;
    }
    for (;;) {
        skip_ws(p);
        char *key = NULL;
        size_t klen = 0, kpos = p->pos;
        if (is_obj) {
            if (p->pos >= p->len || p->s[p->pos] != '"') {
                parse_fail(p, "expected a string key");
                goto fail;
            }
            if (parse_string(p, &key, &klen) < 0)
                goto fail;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                free(key);
                parse_fail(p, "expected ':'");
                goto fail;
            }
            p->pos++;
            if (find_key(c, key, klen) >= 0) {
                p->pos = kpos;
                parse_fail(p, "duplicate key \"%.*s\"", (int)(klen > 60 ? 60 : klen), key);
                free(key);
                goto fail;
            }
        }
        pr_json *v = parse_value(p);
        if (!v) {
            free(key);
            goto fail;
        }
        int rc = is_obj ? pr_json_object_set(c, key, klen, v) : pr_json_array_push(c, v);
        free(key);
        if (rc < 0)
            goto fail;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == close) {
                parse_fail(p, "trailing comma");
                goto fail;
            }
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        parse_fail(p, "expected ',' or '%c'", close);
        goto fail;
    }
    p->depth--;
    return c;
fail:
    pr_json_free(c);
    return NULL;
}

static pr_json *parse_value(parser *p)
{
    skip_ws(p);
    if (p->pos >= p->len) {
        parse_fail(p, "unexpected end of text");
        return NULL;
    }
    char c = p->s[p->pos];
    if (c == '{' || c == '[')
        return parse_container(p, c == '{');
    if (c == '"') {
        char *s;
        size_t n;
        if (parse_string(p, &s, &n) < 0)
            return NULL;
        pr_json *v = pr_json_new(PR_JSON_NULL);
        if (!v) {
            free(s);
            return NULL;
        }
        v->type = PR_JSON_STRING;
        v->str = s;
        v->len = n;
        return v;
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return parse_number(p);
    if (match_word(p, "true"))
        return pr_json_new_bool(1);
    if (match_word(p, "false"))
        return pr_json_new_bool(0);
    if (match_word(p, "null"))
        return pr_json_new(PR_JSON_NULL);
    parse_fail(p, "unexpected character '%c'", c >= 0x20 && c < 0x7F ? c : '?');
    return NULL;
}

pr_json *pr_json_parse(const char *text, size_t len, const char *what)
{
    parser p = { text, len, 0, what ? what : "json", 0 };
    pr_json *v = parse_value(&p);
    if (!v)
        return NULL;
    skip_ws(&p);
    if (p.pos != p.len) {
        parse_fail(&p, "text after the value");
        pr_json_free(v);
        return NULL;
    }
    return v;
}

/* ------------------------------------------------------------------ encoder */

typedef struct sbuf { char *p; size_t n, cap; int failed; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = PR_ENOMEM;
            pr_error_code(PR_ENOMEM, "json: out of memory");
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_quote(sbuf *b, const char *s, size_t n)
{
    sb_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", c);
                esc = u;
            }
        }
        if (esc) {
            sb_put(b, s + run, i - run);
            sb_str(b, esc);
            run = i + 1;
        }
    }
    sb_put(b, s + run, n - run);
    sb_put(b, "\"", 1);
}

static void sb_indent(sbuf *b, int indent, int depth)
{
    if (!indent)
        return;
    sb_put(b, "\n", 1);
    for (int i = 0; i < indent * depth; i++)
        sb_put(b, " ", 1);
}

static int check_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int l = utf8_len((const unsigned char *)s + i, n - i);
        if (!l)
            return -1;
        i += (size_t)l;
    }
    return 0;
}

static void encode(sbuf *b, const pr_json *v, int indent, int depth)
{
    if (b->failed)
        return;
    if (depth > PR_JSON_MAX_DEPTH) {
        b->failed = pr_error("json: value nested deeper than %d", PR_JSON_MAX_DEPTH);
        return;
    }
    char num[40];
    switch (v->type) {
    case PR_JSON_NULL: sb_str(b, "null"); break;
    case PR_JSON_BOOL: sb_str(b, v->boolean ? "true" : "false"); break;
    case PR_JSON_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)v->integer);
        sb_str(b, num);
        break;
    case PR_JSON_NUMBER:
        if (!isfinite(v->number)) {
            b->failed = pr_error("json: cannot encode %g (JSON has no NaN or infinity)", v->number);
            return;
        }
        /* The shortest of %.15g..%.17g that reads back as the same double. */
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(num, sizeof num, "%.*g", prec, v->number);
            if (strtod(num, NULL) == v->number)
                break;
        }
        /* Keep it a float on the way back ("1" would decode as an integer). */
        if (!strpbrk(num, ".eEn"))
            strcat(num, ".0");
        sb_str(b, num);
        break;
    case PR_JSON_STRING:
        if (check_utf8(v->str, v->len) < 0) {
            b->failed = pr_error("json: string is not valid UTF-8");
            return;
        }
        sb_quote(b, v->str, v->len);
        break;
    case PR_JSON_ARRAY:
    case PR_JSON_OBJECT: {
        int obj = v->type == PR_JSON_OBJECT;
        sb_put(b, obj ? "{" : "[", 1);
        for (size_t i = 0; i < v->count; i++) {
            if (i)
                sb_put(b, ",", 1);
            sb_indent(b, indent, depth + 1);
            if (obj) {
                if (check_utf8(v->keys[i], v->key_lens[i]) < 0) {
                    b->failed = pr_error("json: object key is not valid UTF-8");
                    return;
                }
                sb_quote(b, v->keys[i], v->key_lens[i]);
                sb_put(b, indent ? ": " : ":", indent ? 2 : 1);
            }
            encode(b, v->items[i], indent, depth + 1);
        }
        if (v->count)
            sb_indent(b, indent, depth);
        sb_put(b, obj ? "}" : "]", 1);
        break;
    }
    }
}

char *pr_json_encode(const pr_json *v, int indent, size_t *len)
{
    sbuf b = { NULL, 0, 0, 0 };
    encode(&b, v, indent < 0 ? 0 : indent, 0);
    if (!b.failed && !b.p)
        sb_put(&b, "", 0);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.n;
    return b.p;
}
