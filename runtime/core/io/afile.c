/* afile.c: atomic file replacement for every writer in io/ (see io.h).
 * The data goes to `target.tmp.XXXXXX` in the same directory (rename is only atomic within one
 * file system), is flushed and fsynced, and only then renamed over the target: a crash or an
 * error at any point leaves either the old file or the new one, never half of one. */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

struct pr_afile {
    FILE *fp;
    char *path;   /* owned copy of the target */
    char *tmp;    /* owned name of the temporary file */
};

static void afile_free(pr_afile *f)
{
    free(f->path);
    free(f->tmp);
    free(f);
}

pr_afile *pr_afile_open(const char *path)
{
    if (!path || !*path) {
        pr_error("afile: empty file name");
        return NULL;
    }
    pr_afile *f = calloc(1, sizeof *f);
    size_t n = strlen(path);
    if (f) {
        f->path = strdup(path);
        f->tmp = malloc(n + sizeof ".tmp.XXXXXX");
    }
    if (!f || !f->path || !f->tmp) {
        if (f)
            afile_free(f);
        pr_error_code(PR_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    memcpy(f->tmp, path, n);
    memcpy(f->tmp + n, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = mkstemp(f->tmp);
    if (fd < 0) {
        pr_error_code(PR_EIO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        afile_free(f);
        return NULL;
    }
    /* mkstemp makes the file 0600; a replaced file keeps its mode, a new one gets 0644
     * (reading the umask is not thread-safe, so it is not consulted). */
    struct stat st;
    fchmod(fd, stat(path, &st) == 0 ? (st.st_mode & 07777) : 0644);
    f->fp = fdopen(fd, "wb");
    if (!f->fp) {
        pr_error_code(PR_EIO, "%s: %s", path, strerror(errno));
        close(fd);
        unlink(f->tmp);
        afile_free(f);
        return NULL;
    }
    return f;
}

FILE *pr_afile_stream(pr_afile *f) { return f->fp; }

int pr_afile_write(pr_afile *f, const void *data, size_t n)
{
    if (n && fwrite(data, 1, n, f->fp) != n)
        return pr_error_code(PR_EIO, "%s: write failed: %s", f->path, strerror(errno));
    return PR_OK;
}

int pr_afile_commit(pr_afile *f)
{
    int rc = PR_OK;
    if (fflush(f->fp) != 0 || ferror(f->fp))
        rc = pr_error_code(PR_EIO, "%s: write failed: %s", f->path, strerror(errno));
    else if (fsync(fileno(f->fp)) != 0)
        rc = pr_error_code(PR_EIO, "%s: fsync failed: %s", f->path, strerror(errno));
    if (fclose(f->fp) != 0 && rc == PR_OK)
        rc = pr_error_code(PR_EIO, "%s: close failed: %s", f->path, strerror(errno));
    f->fp = NULL;
    if (rc == PR_OK && rename(f->tmp, f->path) != 0)
        rc = pr_error_code(PR_EIO, "%s: cannot replace it: %s", f->path, strerror(errno));
    if (rc != PR_OK) {
        unlink(f->tmp);
    } else {
        /* Make the rename itself durable; failing here cannot undo it, so it is not an error. */
        char *slash = strrchr(f->path, '/');
        char *dir = slash ? strndup(f->path, (size_t)(slash - f->path) + 1) : strdup(".");
        int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY) : -1;
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    afile_free(f);
    return rc;
}

void pr_afile_abort(pr_afile *f)
{
    if (!f)
        return;
    if (f->fp)
        fclose(f->fp);
    unlink(f->tmp);
    afile_free(f);
}

int pr_io_deflate(const void *in, size_t n, int wbits, int level, uint8_t **out, size_t *out_len,
                  const char *what)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, level, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return pr_error_code(PR_ENOMEM, "%s: cannot start zlib", what);
    /* deflateBound is for one deflate() call with the whole input; zlib counts in uInt, so
     * large inputs go through in slices and the bound is recomputed per slice. */
    size_t cap = deflateBound(&zs, n > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uLong)n) + 64;
    if (n > 0xFFFFFFFFu)
        cap = n + n / 1000 + (n >> 14) * 5 + 1024;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        deflateEnd(&zs);
        return pr_error_code(PR_ENOMEM, "%s: out of memory compressing %zu bytes", what, n);
    }
    const uint8_t *src = in;
    size_t done_in = 0, done_out = 0;
    int zrc;
    do {
        size_t in_now = n - done_in > (1u << 30) ? (1u << 30) : n - done_in;
        zs.next_in = (Bytef *)(src + done_in);
        zs.avail_in = (uInt)in_now;
        size_t room = cap - done_out > (1u << 30) ? (1u << 30) : cap - done_out;
        zs.next_out = buf + done_out;
        zs.avail_out = (uInt)room;
        int flush = done_in + in_now == n ? Z_FINISH : Z_NO_FLUSH;
        zrc = deflate(&zs, flush);
        done_in += in_now - zs.avail_in;
        done_out += room - zs.avail_out;
        if (zrc == Z_STREAM_ERROR || (zrc == Z_BUF_ERROR && done_out == cap))
            break;
    } while (zrc != Z_STREAM_END);
    deflateEnd(&zs);
    if (zrc != Z_STREAM_END) {
        free(buf);
        return pr_error_code(PR_EIO, "%s: zlib could not compress the data", what);
    }
    *out = buf;
    *out_len = done_out;
    return PR_OK;
}
