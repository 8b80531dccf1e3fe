# allgo_target_defaults(<target>)
#   C++20, warnings (errors with ALLGO_WERROR), hidden visibility, and ASan+UBSan when
#   ALLGO_SANITIZE is on. A sanitized build instruments everything, the NSS module included,
#   so it is only good for running the unit tests: an ASan runtime cannot be injected into
#   `ls` or `getent` after the fact. scripts/test runs the integration tests on a plain build.
function(allgo_target_defaults target)
  target_compile_features(${target} PRIVATE cxx_std_20)
  set_target_properties(${target} PROPERTIES
    CXX_EXTENSIONS OFF
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    POSITION_INDEPENDENT_CODE ON)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wformat=2 -Wundef -Wnon-virtual-dtor
    -Wno-missing-field-initializers  # C++20 designated initializers leave the rest defaulted
    $<$<BOOL:${ALLGO_WERROR}>:-Werror>)
  target_compile_definitions(${target} PRIVATE _GNU_SOURCE)
  if(ALLGO_FUZZ)
    # Coverage feedback for libFuzzer in every target; fuzzers add -fsanitize=fuzzer to link.
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link,address,undefined)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
  if(ALLGO_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()
