// libFuzzer target for the device protocol's decoder (rpc/protocol.h): any bytes, read as a
// stream of frames or as one payload, must either decode or throw tapml::Error; whatever
// decodes must encode back to the same payload, so the decoder accepts only what the
// encoder could have written.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "rpc/protocol.h"

using namespace tapml;

namespace {

void check_payload(std::span<const uint8_t> payload) {
  rpc::Message m;
  try {
    m = rpc::decode_message(payload);
  } catch (const Error&) {
    return;
  }
  std::vector<uint8_t> again = rpc::encode_message(m);
  if (again.size() != payload.size() ||
      !std::equal(again.begin(), again.end(), payload.begin()))
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check_payload({data, size});
  rpc::FrameReader reader(1 << 16);
  // Fed in two pieces, so frames that straddle a feed are exercised too.
  size_t half = size / 2;
  try {
    reader.feed(data, half);
    while (auto p = reader.next()) check_payload(*p);
    reader.feed(data + half, size - half);
    while (auto p = reader.next()) check_payload(*p);
  } catch (const Error&) {
  }
  return 0;
}
