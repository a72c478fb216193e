#pragma once
// The fuzz input as a file, since the readers take paths: an anonymous
// in-memory regular file (memfd) reached through /proc/self/fd, rewritten for
// each input. No disk traffic, nothing left behind.
//
//   static dg::fuzz::InputFile file;
//   const std::string& path = file.hold(data, size);   // then load_safetensors(path), ...
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace dg::fuzz {

class InputFile {
 public:
  InputFile() : fd_(::memfd_create("dg_fuzz_input", MFD_CLOEXEC)) {
    if (fd_ < 0) std::abort();  // no memfd: nothing to fuzz with
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile() { ::close(fd_); }

  // The path of a regular file holding exactly these bytes.
  const std::string& hold(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0) std::abort();
    for (size_t done = 0; done < size;) {
      const ssize_t w = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (w <= 0) std::abort();
      done += static_cast<size_t>(w);
    }
    return path_;
  }

 private:
  int fd_;
  std::string path_;
};

// An invariant of the code under test does not hold: a finding, like a crash.
inline void require(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace dg::fuzz
