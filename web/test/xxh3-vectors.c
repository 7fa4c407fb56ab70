// Prints XXH3-128 of deterministic inputs of many lengths with the real libxxhash, the
// vectors web/test/xxh3.test.mjs checks the JS hash against:
//   cc xxh3-vectors.c -o /tmp/v -lxxhash && /tmp/v > xxh3-vectors.txt
#include <xxhash.h>
#include <stdio.h>
#include <stdlib.h>
static unsigned char gen(unsigned i) { return (unsigned char)(((i * 131u) ^ (i >> 3) ^ (i >> 11) ^ (i * i)) & 0xffu); }
int main(void) {
  size_t lens[2000]; int n = 0;
  for (size_t l = 0; l <= 300; ++l) lens[n++] = l;
  for (size_t l = 301; l <= 5000; l += 37) lens[n++] = l;
  size_t extra[] = {1023, 1024, 1025, 2047, 2048, 2049, 3071, 3072, 3073, 4096, 65536, 65537, 1000003, 3u<<20, (3u<<20)+5};
  for (int i = 0; i < 15; ++i) lens[n++] = extra[i];
  unsigned char* buf = malloc((3u<<20) + 16);
  for (size_t i = 0; i < (3u<<20) + 16; ++i) buf[i] = gen((unsigned)i);
  for (int i = 0; i < n; ++i) {
    XXH128_hash_t h = XXH3_128bits(buf, lens[i]);
    printf("%zu %016llx%016llx\n", lens[i], (unsigned long long)h.high64, (unsigned long long)h.low64);
  }
  return 0;
}
