# InstallFloodgate.cmake - install-time part of `cmake --install`: the configuration and
# the systemd unit, whose paths depend on the prefix given at install time
# (`cmake --install build --prefix /usr`), which configure-time variables cannot know.
#
# Set by CMakeLists.txt before this script runs: FG_SOURCE_DIR, FG_BINARY_DIR, and
# FG_SBINDIR, FG_SYSCONFDIR, FG_DOCDIR, FG_UNITDIR as configured (relative to the prefix,
# or absolute).
#
# - /etc/floodgate/floodgate.yml (FLOODGATE_CONFIG_VARIANT's, from <build>/conf/) is
#   installed only when absent: an upgrade never replaces
#   an operator's configuration (install(FILES) would; it has no "keep" mode). The new
#   example always lands beside it as floodgate.yml.example.
# - The unit in systemd/ names /usr/sbin and /etc/floodgate; a copy with the paths of this
#   install is written, so a /usr/local install starts the binary it installed.

# GNUInstallDirs' rule: prefix /usr or / keeps its configuration in /etc, not /usr/etc.
function(fg_full_dir rel ret)
  if(IS_ABSOLUTE "${rel}")
    set(dir "${rel}")
  elseif(rel STREQUAL "etc" AND CMAKE_INSTALL_PREFIX MATCHES "^/(usr/?)?$")
    set(dir "/etc")
  else()
    string(REGEX REPLACE "/$" "" prefix "${CMAKE_INSTALL_PREFIX}")
    set(dir "${prefix}/${rel}")
  endif()
  set(${ret} "${dir}" PARENT_SCOPE)
endfunction()

fg_full_dir("${FG_SBINDIR}" sbindir)
fg_full_dir("${FG_SYSCONFDIR}" sysconfdir)
fg_full_dir("${FG_DOCDIR}" docdir)
fg_full_dir("${FG_UNITDIR}" unitdir)
set(confdir "${sysconfdir}/floodgate")

# the variant ConfigVariant.cmake wrote for FLOODGATE_CONFIG_VARIANT
set(conf "${FG_BINARY_DIR}/conf")
# removed first: file(INSTALL) skips a destination whose time equals the source's, which
# an edit made within the same second as the last install can have
file(REMOVE "$ENV{DESTDIR}${confdir}/floodgate.yml.example")
file(INSTALL DESTINATION "${confdir}" TYPE FILE RENAME floodgate.yml.example
     FILES "${conf}/floodgate.yml")
if(EXISTS "$ENV{DESTDIR}${confdir}/floodgate.yml")
  message(STATUS "Keeping: $ENV{DESTDIR}${confdir}/floodgate.yml "
                 "(compare with floodgate.yml.example)")
else()
  # 0640: it may hold alert credentials (a Slack URL, a whsec_ key); floodgated refuses a
  # config with inline credentials that others can read
  file(INSTALL DESTINATION "${confdir}" TYPE FILE FILES "${conf}/floodgate.yml"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
endif()
# The ACL snippet is .included by Exim, never edited (its settings live in exim.conf).
file(INSTALL DESTINATION "${confdir}" TYPE FILE FILES "${conf}/exim-acl.conf")
# The audit log's rotation (copytruncate: the daemon keeps the file open).
file(INSTALL DESTINATION "${sysconfdir}/logrotate.d" TYPE FILE
     FILES "${FG_SOURCE_DIR}/packaging/logrotate/floodgate")

if(EXISTS "${FG_SOURCE_DIR}/systemd/floodgate.service")
  file(READ "${FG_SOURCE_DIR}/systemd/floodgate.service" unit)
  string(REPLACE "/usr/sbin/floodgated" "${sbindir}/floodgated" unit "${unit}")
  string(REPLACE "/etc/floodgate/" "${confdir}/" unit "${unit}")
  string(REPLACE "/usr/share/doc/floodgate/" "${docdir}/" unit "${unit}")
  set(tmpdir "${FG_BINARY_DIR}/fg-install")
  file(MAKE_DIRECTORY "${tmpdir}")
  file(WRITE "${tmpdir}/floodgate.service" "${unit}")
  file(INSTALL DESTINATION "${unitdir}" TYPE FILE FILES "${tmpdir}/floodgate.service")
endif()
