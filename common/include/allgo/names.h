// Validation and sanitising of the names that reach passwd entries and logs.
#pragma once

#include <string>
#include <string_view>

namespace allgo {

// A portable login name: ^[a-z_][a-z0-9_-]{0,31}$ (DESIGN.md). Anything else is, for every
// component, a user that does not exist.
bool IsValidUserName(std::string_view name);

// The webapp display name made safe for the passwd gecos field: ':', ',' and every control
// character (newlines included, and DEL) removed; invalid UTF-8 bytes are kept as they are
// because passwd readers split on ':' and '\n' only. Truncated to 255 bytes.
std::string SanitizeGecos(std::string_view display_name);

// Text made safe for one log line: control characters become '?', at most max_len bytes.
std::string SanitizeForLog(std::string_view text, size_t max_len = 128);

}  // namespace allgo
