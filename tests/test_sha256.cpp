// SHA-256 (data/sha256.h) against the FIPS 180-2 test vectors, and incremental updates.

#include <stdexcept>
#include <string>

#include "data/sha256.h"
#include "tests/support.h"

namespace vae_ebm::test {

// ---------------------------------------------------------------------------------------
// SHA-256

class Sha256Test : public SeedingFixture {};

TEST_F(Sha256Test, FipsTestVectors) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_F(Sha256Test, IncrementalUpdatesEqualOneShot) {
  std::string text;
  for (int i = 0; i < 300; ++i) text.push_back(static_cast<char>((i * 37) & 0xff));
  for (size_t piece : {1, 7, 55, 56, 63, 64, 65, 200}) {
    Sha256 hash;
    for (size_t at = 0; at < text.size(); at += piece) hash.update(text.substr(at, piece));
    EXPECT_EQ(hash.hex_digest(), sha256_hex(text)) << "piece " << piece;
  }
  Sha256 once;
  once.hex_digest();
  EXPECT_THROW(once.hex_digest(), std::logic_error);
}

}  // namespace vae_ebm::test
