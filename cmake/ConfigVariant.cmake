# ConfigVariant.cmake - the configuration and the ACL snippet that `cmake --install` (and
# the packages built on it) install, for the host family given by
# FLOODGATE_CONFIG_VARIANT:
#
#   generic  conf/ as is: cPanel-style paths (/var/log/exim_mainlog, /var/spool/exim,
#            /usr/sbin/exim) with the exim backend
#   cpanel   the same paths, backend cpanel (whmapi1/uapi), control_group floodgate: the
#            RPM for cPanel hosts
#   debian   Debian's exim4 paths (/var/log/exim4/mainlog, /var/spool/exim4,
#            /usr/sbin/exim4, the blocklist in /etc/exim4/), backend exim, control_group
#            floodgate: the deb
#
# Written at configure time to <build>/conf/. Every edit must find the text it replaces:
# a change to conf/ that breaks one fails the configure step instead of shipping a config
# with the old path.

set(FLOODGATE_CONFIG_VARIANT generic CACHE STRING
    "which configuration cmake --install installs: generic, cpanel or debian")
set_property(CACHE FLOODGATE_CONFIG_VARIANT PROPERTY STRINGS generic cpanel debian)

function(fg_variant_edit var from to)
  string(FIND "${${var}}" "${from}" at)
  if(at LESS 0)
    message(FATAL_ERROR "FLOODGATE_CONFIG_VARIANT=${FLOODGATE_CONFIG_VARIANT}: "
                        "'${from}' not found in ${var}; update cmake/ConfigVariant.cmake")
  endif()
  string(REPLACE "${from}" "${to}" out "${${var}}")
  set(${var} "${out}" PARENT_SCOPE)
endfunction()

set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${CMAKE_SOURCE_DIR}/conf/floodgate.yml ${CMAKE_SOURCE_DIR}/conf/exim-acl.conf)
file(READ ${CMAKE_SOURCE_DIR}/conf/floodgate.yml FG_YML)
file(READ ${CMAKE_SOURCE_DIR}/conf/exim-acl.conf FG_ACL)

# The packages create the group "floodgate" for control_group.
if(FLOODGATE_CONFIG_VARIANT STREQUAL "cpanel" OR FLOODGATE_CONFIG_VARIANT STREQUAL "debian")
  fg_variant_edit(FG_YML "\n# control_group: floodgate-ro\n"
                  "\n# (the package created the group floodgate: add users with usermod -aG floodgate)\ncontrol_group: floodgate\n")
endif()
if(FLOODGATE_CONFIG_VARIANT STREQUAL "cpanel")
  fg_variant_edit(FG_YML "\n  backend: exim\n" "\n  backend: cpanel\n")
elseif(FLOODGATE_CONFIG_VARIANT STREQUAL "debian")
  fg_variant_edit(FG_YML "\nlog_file: /var/log/exim_mainlog\n"
                  "\nlog_file: /var/log/exim4/mainlog\n")
  fg_variant_edit(FG_YML "\n  exim_path: /usr/sbin/exim\n" "\n  exim_path: /usr/sbin/exim4\n")
  fg_variant_edit(FG_YML "\n  spool_dir: /var/spool/exim\n" "\n  spool_dir: /var/spool/exim4\n")
  fg_variant_edit(FG_YML "/etc/exim/floodgate-blocklist" "/etc/exim4/floodgate-blocklist")
  fg_variant_edit(FG_ACL "/etc/exim/floodgate-blocklist" "/etc/exim4/floodgate-blocklist")
  fg_variant_edit(FG_ACL "systemctl reload exim4 / exim" "update-exim4.conf; systemctl reload exim4")
  fg_variant_edit(FG_ACL "# HOW TO INCLUDE IT (" "# HOW TO INCLUDE IT with Debian's update-exim4.conf (split or unsplit
# configuration): /usr/share/doc/floodgate/install-debian.md. In an exim4.conf of your own
# (")
elseif(NOT FLOODGATE_CONFIG_VARIANT STREQUAL "generic")
  message(FATAL_ERROR "FLOODGATE_CONFIG_VARIANT must be generic, cpanel or debian, "
                      "not '${FLOODGATE_CONFIG_VARIANT}'")
endif()

# rewritten only when changed, so a file's time stays that of its content
function(fg_variant_write path content)
  if(EXISTS "${path}")
    file(READ "${path}" old)
    if(old STREQUAL content)
      return()
    endif()
  endif()
  file(WRITE "${path}" "${content}")
endfunction()
fg_variant_write(${CMAKE_BINARY_DIR}/conf/floodgate.yml "${FG_YML}")
fg_variant_write(${CMAKE_BINARY_DIR}/conf/exim-acl.conf "${FG_ACL}")
