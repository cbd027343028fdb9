#include "format/elf.h"

#include <fmt/format.h>

#include <cstring>

namespace ota32 {
namespace {

constexpr size_t kElfHeaderSize = 52, kSectionHeaderSize = 0x28, kProgramHeaderSize = 0x20;
constexpr uint32_t kShtProgbits = 1, kShtStrtab = 3, kShtInitArray = 14, kShtFiniArray = 15, kPtLoad = 1;

Error fatal(std::string msg) { return Error(ErrorCode::invalid_argument, std::move(msg)); }

// Python's f.seek(off); f.read(n): whatever is there, possibly nothing.
ByteView read_at(ByteView data, uint64_t off, uint64_t n) {
  if (off >= data.size()) return {};
  return data.subspan(static_cast<size_t>(off),
                      static_cast<size_t>(std::min<uint64_t>(n, data.size() - off)));
}

}  // namespace

Result<ElfFile> parse_elf(ByteView data, std::string_view path) {
  if (data.size() < kElfHeaderSize) {
    return fatal(
        fmt::format("Failed to read a valid ELF header from {}: unpack requires a buffer of 52 bytes", path));
  }
  if (data[0] != 0x7F || data[1] != 'E' || data[2] != 'L' || data[3] != 'F') {
    return fatal(fmt::format("{} has invalid ELF magic header", path));
  }
  ElfFile elf;
  elf.machine = load_le16(&data[18]);
  elf.entry = load_le32(&data[24]);
  const uint32_t phoff = load_le32(&data[28]), shoff = load_le32(&data[32]);
  const uint16_t phnum = load_le16(&data[44]), shentsize = load_le16(&data[46]);
  const uint16_t shnum = load_le16(&data[48]), shstrndx = load_le16(&data[50]);
  if (elf.machine != 0x5E && elf.machine != 0xF3) {
    return fatal(fmt::format("{} does not appear to be an Xtensa or an RISCV ELF file. e_machine={:04x}",
                             path, elf.machine));
  }
  if (shentsize != kSectionHeaderSize) {
    return fatal(
        fmt::format("{} has unexpected section header entry size {:#x} (not 0x28)", path, shentsize));
  }
  if (shnum == 0) return fatal(fmt::format("{} has 0 section headers", path));

  const uint64_t sh_len = uint64_t{shnum} * kSectionHeaderSize;
  ByteView sh = read_at(data, shoff, sh_len);
  if (sh.empty()) return fatal(fmt::format("No section header found at offset {:04x} in ELF file.", shoff));
  if (sh.size() != sh_len) {
    return fatal(
        fmt::format("Only read {:#x} bytes from section header (expected {:#x}.) Truncated ELF file?",
                    sh.size(), sh_len));
  }
  if (shstrndx >= shnum) return fatal(fmt::format("ELF file has no STRTAB section at shstrndx {}", shstrndx));
  const uint8_t* str_hdr = &sh[size_t{shstrndx} * kSectionHeaderSize];
  if (uint32_t t = load_le32(str_hdr + 4); t != kShtStrtab) {
    elf.warnings.push_back(fmt::format("WARNING: ELF file has incorrect STRTAB section type {:#04x}", t));
  }
  ByteView strtab = read_at(data, load_le32(str_hdr + 16), load_le32(str_hdr + 20));

  for (size_t i = 0; i < shnum; ++i) {
    const uint8_t* h = &sh[i * kSectionHeaderSize];
    uint32_t name_off = load_le32(h), type = load_le32(h + 4), flags = load_le32(h + 8);
    uint32_t addr = load_le32(h + 12), off = load_le32(h + 16), size = load_le32(h + 20);
    if (type != kShtProgbits && type != kShtInitArray && type != kShtFiniArray) continue;
    if (addr == 0 || size == 0) continue;
    ElfChunk c;
    const void* nul =
        name_off < strtab.size() ? std::memchr(&strtab[name_off], 0, strtab.size() - name_off) : nullptr;
    if (nul == nullptr) {
      return fatal(fmt::format("{}: section {} name at string table offset {:#x} is not NUL-terminated", path,
                               i, name_off));
    }
    c.name.assign(reinterpret_cast<const char*>(&strtab[name_off]),
                  static_cast<const uint8_t*>(nul) - &strtab[name_off]);
    c.addr = addr;
    c.flags = flags;
    ByteView d = read_at(data, off, size);
    c.data.assign(d.begin(), d.end());
    elf.sections.push_back(std::move(c));
  }

  const uint64_t ph_len = uint64_t{phnum} * kProgramHeaderSize;
  ByteView ph = read_at(data, phoff, ph_len);
  if (ph.empty()) return fatal(fmt::format("No segment header found at offset {:04x} in ELF file.", phoff));
  if (ph.size() != ph_len) {
    return fatal(
        fmt::format("Only read {:#x} bytes from segment header (expected {:#x}.) Truncated ELF file?",
                    ph.size(), ph_len));
  }
  for (size_t i = 0; i < phnum; ++i) {
    const uint8_t* h = &ph[i * kProgramHeaderSize];
    uint32_t type = load_le32(h), off = load_le32(h + 4), paddr = load_le32(h + 12),
             filesz = load_le32(h + 16);
    uint32_t flags = load_le32(h + 24);
    if (type != kPtLoad || paddr == 0 || filesz == 0) continue;
    ByteView d = read_at(data, off, filesz);
    elf.segments.push_back(ElfChunk{"PHDR", paddr, flags, Bytes(d.begin(), d.end())});
  }
  return elf;
}

}  // namespace ota32
