# Warning and hardening flags for every target (-Wall -Wextra, -Werror with FLOODGATE_WERROR).
add_compile_definitions(_GNU_SOURCE)
add_compile_options(
  -Wall -Wextra -Wpedantic
  -Wshadow
  -Wconversion -Wsign-conversion # counts and offsets change width often
  -Wformat=2                     # log_emit() formats are checked too
  -Wstrict-prototypes -Wmissing-prototypes -Wold-style-definition
  -Wvla -Wcast-qual -Wwrite-strings -Wundef -Wimplicit-fallthrough
  -Wnull-dereference -Wdouble-promotion)
if(FLOODGATE_WERROR)
  add_compile_options(-Werror)
endif()

if(FLOODGATE_FUZZ)
  # Coverage-guided fuzzing (fuzz/, docs/fuzzing.md): every module is instrumented for
  # libFuzzer and built with ASan + UBSan; only the harnesses link libFuzzer's main.
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "FLOODGATE_FUZZ needs clang: cmake -DCMAKE_C_COMPILER=clang")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer -O1 -g)
  add_link_options(-fsanitize=address,undefined)
elseif(FLOODGATE_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer -O1 -g)
  add_link_options(-fsanitize=address,undefined)
else()
  include(CheckPIESupported)
  check_pie_supported()
  set(CMAKE_POSITION_INDEPENDENT_CODE ON)
  add_compile_options(-O2 -g -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=3
                      -fstack-protector-strong -fstack-clash-protection)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
    add_compile_options(-fcf-protection)
  endif()
  add_link_options(-Wl,-z,relro,-z,now)
  # Link-time optimization: the parser, tables and hash are separate modules, and inlining
  # across them is worth about a fifth of replay time (scripts/bench replay).
  include(CheckIPOSupported)
  check_ipo_supported(RESULT FG_IPO LANGUAGES C)
  if(FG_IPO)
    set(CMAKE_INTERPROCEDURAL_OPTIMIZATION ON)
  endif()
endif()
