/* png.c: PNG encoding (signature, IHDR, IDAT, IEND) on zlib's deflate and crc32.
 * See png.h. Every row is stored with filter byte 0: mask images are mostly long runs of 0 and
 * 255, which deflate already squeezes well, so adaptive filtering would buy little here. */
#include "png.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "error.h"

/* The PNG specification's limit on width and height is 2^31 - 1; we keep images far smaller
 * so that the filtered size always fits a size_t and a zlib uLong. */
#define PNG_MAX_SIDE 65535

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Appends one chunk (length, type, data, CRC over type and data) at out + *pos. */
static void put_chunk(uint8_t *out, size_t *pos, const char type[4], const uint8_t *data, size_t len)
{
    uint8_t *p = out + *pos;
    put_be32(p, (uint32_t)len);
    memcpy(p + 4, type, 4);
    if (len > 0) memcpy(p + 8, data, len);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, p + 4, (uInt)(4 + len));
    put_be32(p + 8 + len, (uint32_t)crc);
    *pos += 12 + len;
}

int pr_png_encode(const uint8_t *pixels, int64_t width, int64_t height, int channels,
                  uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (!pixels) return pr_error("png: no pixels");
    if (channels != 1 && channels != 3)
        return pr_error("png: channels must be 1 (gray) or 3 (RGB), got %d", channels);
    if (width < 1 || height < 1 || width > PNG_MAX_SIDE || height > PNG_MAX_SIDE)
        return pr_error("png: image size %lldx%lld is outside 1..%d on a side",
                        (long long)width, (long long)height, PNG_MAX_SIDE);

    size_t row = (size_t)width * (size_t)channels;
    size_t raw_len = (row + 1) * (size_t)height;
    uint8_t *raw = malloc(raw_len);
    if (!raw) return pr_error_code(PR_ENOMEM, "png: out of memory for a %lldx%lld image",
                                   (long long)width, (long long)height);
    for (int64_t y = 0; y < height; y++) {
        uint8_t *dst = raw + (size_t)y * (row + 1);
        dst[0] = 0; /* filter type: none */
        memcpy(dst + 1, pixels + (size_t)y * row, row);
    }

    uLong zcap = compressBound((uLong)raw_len);
    /* signature 8 + IHDR 25 + IDAT 12 + data + IEND 12 */
    size_t cap = 8 + 25 + 12 + (size_t)zcap + 12;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        free(raw);
        return pr_error_code(PR_ENOMEM, "png: out of memory");
    }
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(buf, sig, 8);
    size_t pos = 8;

    uint8_t ihdr[13];
    put_be32(ihdr, (uint32_t)width);
    put_be32(ihdr + 4, (uint32_t)height);
    ihdr[8] = 8;                        /* bit depth */
    ihdr[9] = channels == 1 ? 0 : 2;    /* colour type: gray or truecolour */
    ihdr[10] = 0;                       /* deflate */
    ihdr[11] = 0;                       /* adaptive filtering with five basic types */
    ihdr[12] = 0;                       /* no interlace */
    put_chunk(buf, &pos, "IHDR", ihdr, sizeof ihdr);

    /* Compress straight into the IDAT chunk's data area, then write its header and CRC. */
    uLongf zlen = zcap;
    int zrc = compress2(buf + pos + 8, &zlen, raw, (uLong)raw_len, 9);
    free(raw);
    if (zrc != Z_OK) {
        free(buf);
        return pr_error_code(PR_EIO, "png: zlib compress failed (%d)", zrc);
    }
    put_be32(buf + pos, (uint32_t)zlen);
    memcpy(buf + pos + 4, "IDAT", 4);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, buf + pos + 4, (uInt)(4 + zlen));
    put_be32(buf + pos + 8 + zlen, (uint32_t)crc);
    pos += 12 + (size_t)zlen;

    put_chunk(buf, &pos, "IEND", NULL, 0);
    *out = buf;
    *out_len = pos;
    return PR_OK;
}

int pr_png_write(const char *path, const uint8_t *pixels, int64_t width, int64_t height, int channels)
{
    if (!path || !*path) return pr_error("png: empty path");
    uint8_t *png = NULL;
    size_t len = 0;
    int rc = pr_png_encode(pixels, width, height, channels, &png, &len);
    if (rc < 0) return rc;

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        free(png);
        return pr_error_code(PR_ENOMEM, "png: out of memory");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = pr_error_code(PR_EIO, "png: cannot open %s for writing", tmp);
        goto done;
    }
    int bad = fwrite(png, 1, len, f) != len;
    bad |= fflush(f) != 0;
    bad |= fclose(f) != 0;
    if (bad) {
        remove(tmp);
        rc = pr_error_code(PR_EIO, "png: cannot write %s", tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        remove(tmp);
        rc = pr_error_code(PR_EIO, "png: cannot rename %s to %s", tmp, path);
        goto done;
    }
    rc = PR_OK;
done:
    free(tmp);
    free(png);
    return rc;
}
