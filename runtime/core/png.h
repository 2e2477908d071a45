/* png.h: a small PNG writer on zlib, for mask images and plots (8-bit grayscale or RGB).
 *
 * No dependency beyond zlib: the file is the signature, IHDR, one IDAT holding the zlib stream
 * of the filtered scanlines (filter type 0, "none", per row), and IEND, each chunk with its CRC.
 * The file is written to "<path>.tmp" and renamed over `path`, as the model files are.
 */
#ifndef PR_PNG_H
#define PR_PNG_H

#include <stddef.h>
#include <stdint.h>

/* Writes a width x height image of `channels` (1 = gray, 3 = RGB) 8-bit samples, row-major,
 * rows top to bottom, samples of a pixel adjacent. `pixels` is borrowed (width * height *
 * channels bytes). Returns PR_OK, or PR_EINVAL / PR_EIO / PR_ENOMEM with pr_last_error() set. */
int pr_png_write(const char *path, const uint8_t *pixels, int64_t width, int64_t height, int channels);

/* Encodes the same image into a new malloc'd buffer (*out, *out_len; the caller frees *out).
 * Returns PR_OK or a negative status with pr_last_error() set. */
int pr_png_encode(const uint8_t *pixels, int64_t width, int64_t height, int channels,
                  uint8_t **out, size_t *out_len);

#endif
