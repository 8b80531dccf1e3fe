#include "allgo/names.h"

namespace allgo {

bool IsValidUserName(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  auto lower = [](char c) { return c >= 'a' && c <= 'z'; };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (!lower(name[0]) && name[0] != '_') return false;
  for (char c : name.substr(1)) {
    if (!lower(c) && !digit(c) && c != '_' && c != '-') return false;
  }
  return true;
}

static bool IsControl(unsigned char c) { return c < 0x20 || c == 0x7f; }

std::string SanitizeGecos(std::string_view display_name) {
  std::string out;
  out.reserve(display_name.size());
  for (char c : display_name) {
    if (c == ':' || c == ',' || IsControl(static_cast<unsigned char>(c))) continue;
    if (out.size() == 255) break;
    out.push_back(c);
  }
  return out;
}

std::string SanitizeForLog(std::string_view text, size_t max_len) {
  std::string out;
  for (char c : text) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    out.push_back(IsControl(static_cast<unsigned char>(c)) ? '?' : c);
  }
  return out;
}

}  // namespace allgo
