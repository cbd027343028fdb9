#include "flash/nor_flash.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cassert>
#include <cerrno>
#include <cstring>

#include "core/file_io.h"

namespace ota32 {

namespace {
constexpr uint64_t kMaxFlashSize = 256ull << 20;
}

Result<void> check_flash_size(uint64_t size, std::string_view what) {
  if (size == 0 || size % kFlashSectorSize != 0 || size > kMaxFlashSize) {
    return Error(
        ErrorCode::invalid_argument,
        fmt::format("{}: flash size {:#x} is not a non-zero multiple of 4 KiB up to 256 MiB", what, size));
  }
  return {};
}

Result<void> check_flash_range(std::string_view name, uint32_t size, uint32_t addr, uint64_t len,
                               const char* op) {
  if (addr > size || len > size - addr) {
    return Error(ErrorCode::out_of_range,
                 fmt::format("{}: {} of {:#x} bytes at {:#010x} runs past the end of flash ({:#x} bytes)",
                             name, op, len, addr, size));
  }
  return {};
}

Result<void> check_program_bits(std::string_view name, uint32_t addr, ByteView cells, ByteView data,
                                ProgramRule rule) {
  assert(cells.size() == data.size());
  if (rule != ProgramRule::strict) return {};
  for (size_t i = 0; i < data.size(); ++i) {
    if (data[i] != 0xFF && (data[i] & ~cells[i]) != 0) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("{}: program at {:#010x} needs a 0->1 bit change (flash holds {:#04x}, data "
                               "{:#04x}): the sector was not erased",
                               name, addr + i, cells[i], data[i]));
    }
  }
  return {};
}

Result<void> check_erase_alignment(std::string_view name, uint32_t addr, uint32_t len) {
  if (addr % kFlashSectorSize != 0 || len % kFlashSectorSize != 0) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: erase of {:#x} bytes at {:#010x} is not aligned to the 4 KiB sector", name,
                             len, addr));
  }
  return {};
}

Result<void> NorFlash::read(uint32_t addr, std::span<uint8_t> out) {
  OTA32_TRY(check_flash_range(name_, size(), addr, out.size(), "read"));
  if (!out.empty()) std::memcpy(out.data(), cells_.data() + addr, out.size());
  return {};
}

Result<void> NorFlash::check_program(uint32_t addr, ByteView data) const {
  OTA32_TRY(check_flash_range(name_, size(), addr, data.size(), "program"));
  return check_program_bits(name_, addr, ByteView(cells_.data() + addr, data.size()), data, rule_);
}

Result<void> NorFlash::program(uint32_t addr, ByteView data) {
  OTA32_TRY(check_program(addr, data));
  uint8_t* cells = cells_.data() + addr;
  for (size_t i = 0; i < data.size(); ++i) cells[i] &= data[i];
  return {};
}

Result<void> NorFlash::check_erase(uint32_t addr, uint32_t len) const {
  OTA32_TRY(check_erase_alignment(name_, addr, len));
  return check_flash_range(name_, size(), addr, len, "erase");
}

Result<void> NorFlash::erase(uint32_t addr, uint32_t len) {
  OTA32_TRY(check_erase(addr, len));
  std::memset(cells_.data() + addr, 0xFF, len);
  return {};
}

void NorFlash::poke(uint32_t addr, ByteView data) {
  assert(addr <= cells_.size() && data.size() <= cells_.size() - addr);
  if (!data.empty()) std::memcpy(cells_.data() + addr, data.data(), data.size());
}

MemFlash::MemFlash(uint32_t size, std::string name) : NorFlash(std::move(name)), storage_(size, 0xFF) {
  attach(storage_);
}

MemFlash::MemFlash(Bytes contents, std::string name)
    : NorFlash(std::move(name)), storage_(std::move(contents)) {
  attach(storage_);
}

FileFlash::FileFlash(std::string name, uint8_t* map, size_t len)
    : NorFlash(std::move(name)), map_(map), len_(len) {
  attach(std::span<uint8_t>(map_, len_));
}

FileFlash::~FileFlash() {
  ::msync(map_, len_, MS_SYNC);
  ::munmap(map_, len_);
}

Result<std::unique_ptr<FileFlash>> FileFlash::open(const std::filesystem::path& path) {
  const std::string name = path.string();
  int fd = ::open(name.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return Error(err == ENOENT ? ErrorCode::not_found : ErrorCode::io_error,
                 fmt::format("{}: cannot open: {}", name, std::strerror(err)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Error(ErrorCode::io_error, fmt::format("{}: cannot stat: {}", name, std::strerror(err)));
  }
  if (auto ok = check_flash_size(static_cast<uint64_t>(st.st_size), name); !ok) {
    ::close(fd);
    return ok.error();
  }
  void* map = ::mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  ::close(fd);
  if (map == MAP_FAILED) {
    return Error(ErrorCode::io_error, fmt::format("{}: cannot map: {}", name, std::strerror(err)));
  }
  return std::unique_ptr<FileFlash>(new FileFlash(name, static_cast<uint8_t*>(map), st.st_size));
}

Result<void> FileFlash::create(const std::filesystem::path& path, uint32_t size) {
  OTA32_TRY(check_flash_size(size, path.string()));
  Bytes erased(size, 0xFF);
  return write_file_atomic(path, erased, Durability::synced);
}

Result<void> FileFlash::sync() {
  if (::msync(map_, len_, MS_SYNC) != 0) {
    return Error(ErrorCode::io_error, fmt::format("{}: msync failed: {}", name(), std::strerror(errno)));
  }
  return {};
}

}  // namespace ota32
