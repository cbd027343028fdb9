// A small bounds-checked ELF32 reader with esptool v4.8.1's rules (spec/esp-app-image.md §8.3): what
// elf2image takes from an ELF, and its error texts. Debian's libelf would add a shared library to every
// `ota32` start for ~150 lines of reading; this reader is fuzzable on its own.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"

namespace ota32 {

struct ElfChunk {
  std::string name;  // section name, or "PHDR" for a program header
  uint32_t addr = 0;
  uint32_t flags = 0;
  Bytes data;  // as read: shorter than the declared size if the file ends early
};

struct ElfFile {
  uint16_t machine = 0;  // 0x5E Xtensa, 0xF3 RISC-V
  uint32_t entry = 0;
  std::vector<ElfChunk> sections;     // PROGBITS / INIT_ARRAY / FINI_ARRAY with addr != 0 and size > 0
  std::vector<ElfChunk> segments;     // PT_LOAD with p_paddr != 0 and p_filesz > 0
  std::vector<std::string> warnings;  // e.g. "WARNING: ELF file has incorrect STRTAB section type 0x08"
};

// `path` is used in messages as given. Errors are invalid_argument with esptool's fatal-error text.
Result<ElfFile> parse_elf(ByteView data, std::string_view path);

}  // namespace ota32
